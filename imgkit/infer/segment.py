"""Segment images with a segmentation bundle: masks at each image's own size.

Images are decoded in threads and batched by :func:`imgkit.infer.predict.decoded_batches`
(the same streamed pipeline as predict), run through the model at its input size,
and each probability map is resized back to its image's own size before it is
thresholded, so the mask edges follow the image, not the model's grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.dataset import Dataset, Reject
from imgkit.data.images import open_image, to_array
from imgkit.errors import BadDatasetError, BadImageError
from imgkit.infer.inputs import (
    decoded_batches,
    is_dataset_folder,
    iter_input_paths,
    shard_bounds,
)

DEFAULT_THRESHOLD = 0.5


@dataclass
class Segmented:
    """One image's result.

    Attributes:
        path: the image file.
        proba: P(object) per pixel, float32 (height, width) at the image's own size.
        truth: the true mask (bool, own size) when the image came from a dataset with
            masks, else None.
    """

    path: Path
    proba: np.ndarray
    truth: np.ndarray | None = None


def flip_tta(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Average the model's maps of ``x`` and of its mirror, the mirror's map flipped back.

    Both views go through the model in one call. ``predict`` maps (n, h, w, c) to
    (n, h, w, 1).
    """
    n = len(x)
    out = np.asarray(predict(np.concatenate([x, x[:, :, ::-1]])), dtype=np.float32)
    return (out[:n] + out[n:, :, ::-1]) / 2


def resize_proba(proba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (h, w) probability map to (width, height) ``size``, bilinear, in [0, 1]."""
    img = Image.fromarray(np.asarray(proba, dtype=np.float32), mode="F")
    return np.clip(np.asarray(img.resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)


def _dataset_items(folder: Path, split: str | None) -> tuple[list[Path], dict[str, Path]]:
    """A dataset split's image paths and, when it has masks, each image's mask file."""
    ds = Dataset.load(folder)
    if split is None:
        have = ds.splits()
        split = next((s for s in ("test", "val", "unlabeled", "train") if s in have), "test")
    paths = ds.paths(split)
    truths = {}
    if ds.task == "segmentation" and "mask" in ds.manifest.columns:
        truths = {str(p): m for p, m in zip(paths, ds.mask_paths(split), strict=True)}
    return paths, truths


def segment_entries(
    inputs: Iterable[str | os.PathLike], stdin, split: str | None, truths: dict[str, Path]
) -> Iterator[tuple[Path | None, Reject | None]]:
    """What ``segment`` reads, in order: ``(path, None)`` per image, ``(None, reject)`` per
    input that cannot be; a dataset folder's true masks are added to ``truths``."""
    for item in inputs:
        if str(item) != "-" and is_dataset_folder(item):
            found, masks = _dataset_items(Path(item), split)
            truths.update(masks)
            yield from ((p, None) for p in found)
        else:
            yield from iter_input_paths([item], stdin)


def segment_inputs(
    bundle,
    inputs: Iterable[str | os.PathLike],
    *,
    stdin=None,
    split: str | None = None,
    batch_size: int = 16,
    tta: bool = False,
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Segmented]:
    """Segment image files, folders, ``-`` (paths on stdin) or a dataset folder's split.

    Args:
        bundle: a loaded segmentation Bundle.
        inputs: what to segment, in order.
        stdin: the stream ``-`` reads paths from.
        split: for a dataset folder: the split (default test, else val).
        batch_size: images per model call.
        tta: also run each image mirrored and average the maps (flipped back).
        on_reject: called for each input that cannot be read.
        workers: decoding threads.
        shard: ``(i, n)``: only the i-th of n contiguous slices of the inputs, in order.

    Yields:
        One :class:`Segmented` per image that could be read.
    """
    size, channels = tuple(bundle.input_size), bundle.channels
    model = bundle.model
    truths: dict[str, Path] = {}
    own_size: dict[str, tuple[int, int]] = {}

    def paths() -> Iterator[Path]:
        listed = segment_entries(inputs, stdin, split, truths)
        if shard is not None:
            # Contiguous slices need the count: list every input first.
            everything = list(listed)
            start, stop = shard_bounds(len(everything), shard)
            listed = iter(everything[start:stop])
        for path, reject in listed:
            if reject is not None:
                if on_reject:
                    on_reject(reject)
            else:
                yield path

    def decode(path: Path) -> np.ndarray:
        with open_image(path) as img:
            own_size[str(path)] = img.size
            return to_array(img, size, channels, "stretch")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(np.asarray(x, dtype=np.float32)))

    for good, arrays in decoded_batches(paths(), decode, batch_size, workers, on_reject):
        maps = flip_tta(predict, arrays) if tta else predict(arrays)
        for path, m in zip(good, maps, strict=True):
            yield segmented(path, m[..., 0], own_size.pop(str(path)), truths)


def segmented(path: Path, model_map: np.ndarray, own_size, truths: dict[str, Path]) -> Segmented:
    """The model's map for one image brought to the image's own (width, height), with
    its true mask when the dataset has one."""
    from imgkit.data.masks import read_mask

    truth = None
    mask_file = truths.get(str(path))
    if mask_file is not None:
        try:
            truth = read_mask(mask_file).mask
        except BadImageError as e:
            raise BadDatasetError(f"{mask_file}: unusable true mask ({e})") from e
    return Segmented(path, resize_proba(model_map, tuple(int(v) for v in own_size)), truth)


def overlay_panel(image: Image.Image, mask: np.ndarray, truth: np.ndarray | None = None):
    """Side by side: the image, the mask, the mask over the image (red) and the truth."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    white = np.array([255, 255, 255], dtype=np.uint8)
    as_rgb = lambda m: np.where(m[..., None], white, np.uint8(0)).astype(np.uint8)  # noqa: E731
    tinted = rgb.astype(np.float32)
    tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.array([255, 0, 0])
    panels = [rgb, as_rgb(mask), tinted.astype(np.uint8)]
    if truth is not None and truth.shape == (h, w):
        panels.append(as_rgb(truth))
    gap = np.full((h, max(2, w // 50), 3), 128, dtype=np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return Image.fromarray(np.concatenate(row, axis=1))
