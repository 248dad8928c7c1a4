"""Binary masks: reading any encoding, resizing without blurring, scoring, writing.

A mask marks each pixel of an image as object (1) or background (0). Files come in
many encodings: 0/1 or 0/255 grayscale, a palette image, or RGB with one object
colour on a background colour. :func:`read_mask` turns each into a boolean array
(the seed's rule: ``mask / max > 0.5``, i.e. the brighter of the two values is the
object), or says why it cannot. No TensorFlow here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.tiff_quiet import quiet_libtiff
from imgkit.errors import BadImageError
from imgkit.fileio import atomic_path

# A mask that is not two-valued is repaired (thresholded at half its range) only when
# nearly every pixel already sits at one of its two extremes: JPEG ringing or
# anti-aliased edges. Anything else (an instance label map, a photo) is refused.
REPAIR_EXTREME_SHARE = 0.98
REPAIR_TOLERANCE = 0.15  # of the value range, counted as "at an extreme"


@dataclass
class MaskInfo:
    """What :func:`read_mask` found.

    Attributes:
        mask: boolean (height, width), True for object pixels.
        note: what was repaired, or "" when the file was a clean two-valued mask.
        plain: True when the file is already a 0/255 (or 0-only) grayscale mask that
            needs no conversion to be used as it is.
    """

    mask: np.ndarray
    note: str = ""
    plain: bool = False


def _values(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """One scalar per pixel, plus the brightness of each scalar value (None: itself).

    Colour masks are keyed by colour, so "two-valued" means two colours; their order
    (which is the object) comes from the brightness of each colour.
    """
    if img.mode == "P":
        idx = np.asarray(img, dtype=np.int64)
        palette = np.asarray(img.convert("RGB"), dtype=np.int64).sum(axis=-1)
        return idx, palette
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        return key, rgb.sum(axis=-1)
    if img.mode in ("LA", "PA"):
        img = img.convert("L")
    return np.asarray(img).astype(np.int64), None


def read_mask(path: str | os.PathLike) -> MaskInfo:
    """Read a mask file of any common encoding as a boolean array.

    Raises:
        BadImageError: unreadable, all background (empty), or not two-valued (and not
            safely repairable); the reason says which.
    """
    path = Path(path)
    quiet_libtiff()  # a damaged TIFF mask: the reject reason is the one message
    try:
        with Image.open(path) as img:
            img.load()
            key, brightness = _values(img)
            mode = img.mode
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(str(path), f"unreadable mask ({e})") from e
    if key.ndim != 2:
        raise BadImageError(str(path), f"unreadable mask (shape {key.shape})")
    values = np.unique(key)
    order, first = values, {}
    if brightness is not None:
        # Brightness of each distinct key: take it from the first pixel holding that key.
        flat_key, flat_b = key.reshape(-1), brightness.reshape(-1)
        first = {int(v): int(flat_b[np.argmax(flat_key == v)]) for v in values[:3]}
        order = np.array(sorted(first, key=lambda v: first[v]))
    if len(values) == 1:
        level = int(values[0]) if brightness is None else first[int(values[0])]
        if level == 0:
            raise BadImageError(str(path), "empty mask (every pixel is background)")
        raise BadImageError(
            str(path), "mask has a single value (no background): not a two-valued mask"
        )
    if len(values) == 2:
        obj = key == order[-1]
        plain = mode in ("L", "1") and set(values.tolist()) <= {0, 255}
        return MaskInfo(obj, "", plain)
    if brightness is None:
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo
        near = (key <= lo + REPAIR_TOLERANCE * span) | (key >= hi - REPAIR_TOLERANCE * span)
        if near.mean() >= REPAIR_EXTREME_SHARE:
            obj = key > lo + span / 2
            if not obj.any():
                raise BadImageError(str(path), "empty mask (every pixel is background)")
            return MaskInfo(
                obj, f"repaired: {len(values)} grey levels (compression noise) thresholded at half"
            )
    raise BadImageError(
        str(path),
        f"not a two-valued mask ({len(values)} distinct values; an instance label map or a "
        "photo? convert it to object/background first)",
    )


def mask_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a mask file, without decoding it."""
    with Image.open(path) as img:
        return img.size


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a boolean/0-1 mask to (height, width) by nearest neighbour: never blurred."""
    h, w = int(size[0]), int(size[1])
    m = np.asarray(mask)
    if m.shape[:2] == (h, w):
        return (m.reshape(h, w) > 0).astype(np.uint8)
    img = Image.fromarray((m.reshape(m.shape[0], m.shape[1]) > 0).astype(np.uint8) * 255)
    return (np.asarray(img.resize((w, h), Image.Resampling.NEAREST)) > 127).astype(np.uint8)


def load_mask_array(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """A mask file as a uint8 0/1 array (height, width, 1) at ``size``, nearest-resized."""
    return resize_mask(read_mask(path).mask, size)[..., None]


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a boolean/0-1 mask as a 0/255 grayscale PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.asarray(mask).reshape(mask.shape[0], mask.shape[1]) > 0).astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="L").save(tmp, format="PNG")
    return path


# --- scoring --------------------------------------------------------------------------


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU, Dice and pixel accuracy of one predicted mask against the true one.

    Two empty masks agree perfectly (IoU and Dice 1): nothing to find, nothing found.
    """
    p = np.asarray(pred).astype(bool).reshape(-1)
    t = np.asarray(truth).astype(bool).reshape(-1)
    inter = float(np.count_nonzero(p & t))
    union = float(np.count_nonzero(p | t))
    total = float(np.count_nonzero(p) + np.count_nonzero(t))
    return {
        "iou": inter / union if union else 1.0,
        "dice": 2 * inter / total if total else 1.0,
        "pixel_accuracy": float(np.mean(p == t)) if p.size else float("nan"),
    }


def batch_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean per-image IoU, Dice and pixel accuracy over a batch (n, h, w[, 1])."""
    rows = [mask_scores(p, t) for p, t in zip(pred, truth, strict=True)]
    return mean_scores(rows)


def mean_scores(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {"iou": float("nan"), "dice": float("nan"), "pixel_accuracy": float("nan")}
    return {k: float(np.mean([r[k] for r in rows])) for k in ("iou", "dice", "pixel_accuracy")}
