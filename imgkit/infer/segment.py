"""Segmentation's arithmetic: masks at each image's own size, and overlay panels.

Images are read and batched by the same plan and engine as predict
(:func:`imgkit.infer.run.segment_inputs`), run through the model at its input size,
and each probability map is resized back to its image's own size before it is
thresholded, so the mask edges follow the image, not the model's grid. A multi-class
bundle's maps have one channel per class (softmax); each is resized the same way and
every pixel takes its most probable class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.errors import BadDatasetError, BadImageError
from imgkit.infer.plan import Item

DEFAULT_THRESHOLD = 0.5


@dataclass
class Segmented:
    """One image's result.

    Attributes:
        path: the image file.
        proba: P(object) per pixel, float32 (height, width) at the image's own size; for
            a multi-class bundle P(class) per pixel, (height, width, classes).
        truth: the true mask (bool, own size; class values for a multi-class bundle)
            when the image came from a dataset with masks, else None.
    """

    path: Path
    proba: np.ndarray
    truth: np.ndarray | None = None


def is_multiclass(bundle) -> bool:
    """Whether ``bundle`` segments multi-class masks (a softmax over C+1 classes)."""
    return bundle.task == "segmentation" and len(bundle.classes) > 2


def class_values(proba: np.ndarray) -> np.ndarray:
    """Each pixel's most probable class, uint8 (height, width)."""
    return np.argmax(proba, axis=-1).astype(np.uint8)


def flip_tta(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Average the model's maps of ``x`` and of its mirror, the mirror's map flipped back.

    Both views go through the model in one call. ``predict`` maps (n, h, w, c) to
    (n, h, w, k).
    """
    n = len(x)
    out = np.asarray(predict(np.concatenate([x, x[:, :, ::-1]])), dtype=np.float32)
    return (out[:n] + out[n:, :, ::-1]) / 2


def resize_proba(proba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (h, w) probability map to (width, height) ``size``, bilinear, in [0, 1];
    a (h, w, k) stack channel by channel."""
    if np.ndim(proba) == 3:
        return np.stack([resize_proba(proba[..., i], size) for i in range(proba.shape[-1])], -1)
    img = Image.fromarray(np.asarray(proba, dtype=np.float32), mode="F")
    return np.clip(np.asarray(img.resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)


def segmented(item: Item, model_map: np.ndarray, own_size, num_classes: int = 2) -> Segmented:
    """The model's map for one image brought to the image's own (width, height), with
    its true mask when the item has one (a segmentation dataset's split); class values
    for a multi-class model of ``num_classes``."""
    from imgkit.data.classmasks import read_index_png
    from imgkit.data.masks import read_mask

    truth = None
    if item.truth is not None:
        try:
            if num_classes > 2:
                truth = read_index_png(item.truth, num_classes, ignore=True)
            else:
                truth = read_mask(item.truth).mask
        except BadImageError as e:
            raise BadDatasetError(f"{item.truth}: unusable true mask ({e})") from e
    size = tuple(int(v) for v in own_size)
    return Segmented(item.path, resize_proba(model_map, size), truth)


def overlay_panel(
    image: Image.Image, mask: np.ndarray, truth: np.ndarray | None = None, colors=None
):
    """Side by side: the image, the mask, the mask over the image (red) and the truth.

    With ``colors`` (one RGB per class), ``mask`` and ``truth`` are class values, drawn
    in their classes' colours, and every class but the background tints the image.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    if colors is None:
        table = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
        tint = np.array([[0, 0, 0], [255, 0, 0]], dtype=np.float32)
    else:
        from imgkit.data.classmasks import IGNORE, IGNORE_COLOR

        table = np.zeros((256, 3), dtype=np.uint8)
        if len(colors) <= IGNORE:  # a true mask's ignored pixels, as the dataset shows them
            table[IGNORE] = IGNORE_COLOR
        table[: len(colors)] = np.asarray(colors, dtype=np.uint8)
        tint = table.astype(np.float32)

    def as_rgb(m):
        return table[np.asarray(m).astype(np.intp)]

    values = np.asarray(mask).astype(np.intp)
    shown = values > 0
    tinted = rgb.astype(np.float32)
    tinted[shown] = 0.5 * tinted[shown] + 0.5 * tint[values[shown]]
    panels = [rgb, as_rgb(values), tinted.astype(np.uint8)]
    if truth is not None and truth.shape == (h, w):
        panels.append(as_rgb(truth))
    gap = np.full((h, max(2, w // 50), 3), 128, dtype=np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return Image.fromarray(np.concatenate(row, axis=1))
