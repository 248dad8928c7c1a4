"""Multi-class masks: the class table, reading each encoding, palette PNGs, per-class IoU.

A multi-class mask gives each pixel a class value: 0 the background, 1..C the named
classes (``imgkit prep --mask-classes FILE``, one name per line for the values 0..C).
Files come as single-channel index PNGs (the value is the class), palette PNGs (the
palette index is the class) or RGB images whose colours ``--mask-colors FILE`` maps to
the classes (lines ``NAME R G B``, the first line value 0). :func:`read_class_mask`
turns each into a uint8 (height, width) array of values, or says why it cannot: a
value outside the named classes, a colour not in the table. Datasets and ``segment``
store them as palette PNGs whose indices are the values and whose palette is the
classes' colours, so any image viewer shows them in colour. The class files are read
by :mod:`imgkit.data.classfiles`. No TensorFlow here.

Pixels nobody labelled (PASCAL VOC's object borders, Cityscapes' void regions) can be
declared ignored: a line ``255 ignore`` in the class file (or ``prep --mask-ignore
255``) names a mask value, a line ``ignore R G B`` in the colour file a colour. A
dataset stores every ignored pixel as :data:`IGNORE` (255; so at most 255 classes);
any true value of C+1 or more is an ignored pixel to the losses and the scores, which
leave it out (:func:`confusion`). Predictions never hold it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.tiff_quiet import quiet_libtiff
from imgkit.errors import BadImageError
from imgkit.fileio import atomic_path

# At least background and two classes: one foreground class is a binary mask, which
# imgkit reads without a class table (0/255, palette or two-colour masks).
MIN_CLASSES = 3
MAX_CLASSES = 256  # a palette PNG's indices
# What an ignored pixel holds in a dataset's stored masks, and its colour there: the
# value and colour of PASCAL VOC's void borders (torchvision and mmseg use 255 too).
IGNORE = 255
IGNORE_COLOR = (224, 224, 192)
IGNORE_NAME = "ignore"  # the word that declares an ignored value or colour
_SHOW = 3  # how many stray values or colours a reject reason names
# dataset.json's keys that say how to read its multi-class masks (MaskClasses.info()).
MASK_INFO_KEYS = ("mask_classes", "mask_colors", "mask_ignore", "mask_ignore_values",
                  "mask_ignore_colors")  # fmt: skip


@dataclass(frozen=True)
class MaskClasses:
    """The classes of a multi-class segmentation dataset.

    Attributes:
        names: class names for the mask values 0..C, background first.
        colors: an (R, G, B) per class: from --mask-colors, else a default palette.
        by_colour: masks are keyed by colour (--mask-colors was given): RGB and palette
            masks are read by their pixels' colours, not by palette index.
        ignore_values: mask values (above C) of pixels to ignore, read as :data:`IGNORE`.
        ignore_colors: colours of pixels to ignore (masks read by colour).
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    by_colour: bool = False
    ignore_values: tuple[int, ...] = ()
    ignore_colors: tuple[tuple[int, int, int], ...] = ()

    @property
    def ignores(self) -> bool:
        """Whether some pixels are declared ignored."""
        return bool(self.ignore_values or self.ignore_colors)

    def info(self) -> dict:
        """What dataset.json and imgkit.json record: the classes, their colours and, when
        some pixels are ignored, ``mask_ignore`` (their value in the stored masks) and
        what marked them in the source masks."""
        out = {"mask_classes": list(self.names), "mask_colors": [list(c) for c in self.colors]}
        if self.ignores:
            out["mask_ignore"] = IGNORE
            if self.ignore_values:
                out["mask_ignore_values"] = list(self.ignore_values)
            if self.ignore_colors:
                out["mask_ignore_colors"] = [list(c) for c in self.ignore_colors]
        return out

    def palette(self) -> list[tuple[int, int, int]]:
        """The stored masks' 256 palette colours: the classes', then black, and at
        :data:`IGNORE` the ignored pixels' colour."""
        out = list(self.colors) + [(0, 0, 0)] * (MAX_CLASSES - len(self.colors))
        if self.ignores:
            out[IGNORE] = self.ignore_colors[0] if self.ignore_colors else IGNORE_COLOR
        return out


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours, black first: each index's bits spread over R, G and B
    from the high bit down (the scheme of the PASCAL VOC palette)."""
    out = []
    for i in range(n):
        r = g = b = 0
        value = i
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        out.append((r, g, b))
    return out


def _by_colour(rgb: np.ndarray, table: MaskClasses, path: Path) -> np.ndarray:
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours = list(table.colors) + list(table.ignore_colors)
    known = np.array([(r << 16) | (g << 8) | b for r, g, b in colours], dtype=np.int64)
    # What each colour reads as: its class, or IGNORE for an ignored colour.
    value_of = np.array(
        list(range(len(table.colors))) + [IGNORE] * len(table.ignore_colors), dtype=np.uint8
    )
    order = np.argsort(known)
    at = np.clip(np.searchsorted(known[order], key), 0, len(known) - 1)
    found = known[order][at] == key
    if not found.all():
        stray, counts = np.unique(key[~found], return_counts=True)
        top = stray[np.argsort(-counts)][:_SHOW]
        shown = "; ".join(f"{v >> 16},{(v >> 8) & 255},{v & 255}" for v in top.tolist())
        raise BadImageError(
            str(path),
            f"colour not in --mask-colors: {shown} ({int((~found).sum())} pixels)",
        )
    return value_of[order[at]]


def read_class_mask(
    path: str | os.PathLike, table: MaskClasses, palette_by_index: bool = False
) -> np.ndarray:
    """A multi-class mask file as uint8 class values (height, width).

    Index (grayscale) files give their values; palette files their palette indices,
    or, with a colour table, their pixels' colours (unless ``palette_by_index``: a
    predicted mask from ``segment``, whose palette indices are the values); RGB files
    need the colour table. An ignored value or colour reads as :data:`IGNORE`.

    Raises:
        BadImageError: unreadable, an RGB mask without --mask-colors, a colour not in
            the table, or a value outside 0..C (and not ignored); the reason says which.
    """
    path = Path(path)
    quiet_libtiff()
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "PA") and (palette_by_index or not table.by_colour):
                values = np.asarray(img.getchannel(0), dtype=np.int64)
            elif mode in ("P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                if not table.by_colour:
                    raise BadImageError(
                        str(path),
                        f"a colour ({mode}) mask: give the class colours with --mask-colors",
                    )
                rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
                return _by_colour(rgb, table, path)
            elif mode == "1":
                values = np.asarray(img, dtype=np.int64)
            else:
                values = np.asarray(img.getchannel(0) if mode == "LA" else img).astype(np.int64)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(str(path), f"unreadable mask ({e})") from e
    if values.ndim != 2:
        raise BadImageError(str(path), f"unreadable mask (shape {values.shape})")
    top = len(table.names) - 1
    ignored = np.isin(values, table.ignore_values) if table.ignore_values else None
    stray = (values > top) | (values < 0)
    if ignored is not None:
        stray &= ~ignored
    if stray.any():
        shown = np.unique(values[stray])[:_SHOW].tolist()
        also = (
            f", ignoring {', '.join(map(str, table.ignore_values))}" if ignored is not None else ""
        )
        raise BadImageError(
            str(path),
            f"mask value {', '.join(map(str, shown))} outside the {top + 1} named classes "
            f"(0..{top}{also})",
        )
    if ignored is not None:
        values[ignored] = IGNORE
    return values.astype(np.uint8)


def read_index_png(path: str | os.PathLike, num_classes: int, ignore: bool = False) -> np.ndarray:
    """A stored or predicted index mask (palette or grayscale PNG) as uint8 values.

    Args:
        path: the PNG.
        num_classes: how many classes its values may name.
        ignore: a dataset's true mask: :data:`IGNORE` is an ignored pixel (when it is
            not a class), not a stray value. Predicted masks never hold it.

    Raises:
        BadImageError: unreadable, not single-channel, or a value of ``num_classes``
            or more (other than an ignored one).
    """
    ignored = (IGNORE,) if ignore and num_classes <= IGNORE else ()
    table = MaskClasses(tuple(str(i) for i in range(num_classes)), (), ignore_values=ignored)
    return read_class_mask(path, table)


def mask_loader(k: int):
    """``fn(path, size)``: a dataset's stored mask as uint8 (height, width, 1) at ``size``:
    class values for ``k`` classes (multi-class masks; :data:`IGNORE` at ignored pixels),
    else 0/1 (``k`` 0: binary)."""
    if not k:
        from imgkit.data.masks import load_mask_array

        return load_mask_array
    return lambda path, size: resize_index(read_index_png(path, k, ignore=True), size)[..., None]


def resize_index(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize class values to (height, width) by nearest neighbour: no new values."""
    h, w = int(size[0]), int(size[1])
    v = np.asarray(values, dtype=np.uint8)
    if v.shape[:2] == (h, w):
        return v.reshape(h, w)
    img = Image.fromarray(v.reshape(v.shape[0], v.shape[1]), mode="L")
    return np.asarray(img.resize((w, h), Image.Resampling.NEAREST))


def write_class_png(path: str | os.PathLike, values: np.ndarray, colors) -> Path:
    """Write class values as a palette PNG (index = value, palette = ``colors``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(values, dtype=np.uint8).reshape(values.shape[0], values.shape[1])
    img = Image.fromarray(pixels, mode="L").convert("P")
    flat = [int(v) for c in colors for v in c]
    img.putpalette(flat + [0] * (768 - len(flat)))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def class_colors(meta: dict) -> list[tuple[int, int, int]]:
    """The colours a dataset.json or imgkit.json records (default ones if none)."""
    names = meta.get("mask_classes") or meta.get("classes") or []
    given = meta.get("mask_colors")
    if given and len(given) == len(names):
        return [tuple(int(v) for v in c) for c in given]
    return default_colors(len(names))


# --- scoring --------------------------------------------------------------------------


def confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """The k x k pixel counts: row the true class, column the predicted one.

    A true value of ``k`` or more is an ignored pixel (:data:`IGNORE`): not counted, so
    neither IoU nor pixel accuracy sees it, whatever was predicted there.
    """
    t = np.asarray(truth, dtype=np.int64).reshape(-1)
    p = np.asarray(pred, dtype=np.int64).reshape(-1)
    kept = t < k
    if not kept.all():
        t, p = t[kept], p[kept]
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def class_ious(matrix: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN for a class neither true nor predicted."""
    m = np.asarray(matrix, dtype=np.float64)
    inter = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def iou_summary(matrix: np.ndarray, names) -> dict:
    """mean_iou (over classes present in truth or prediction), pixel_accuracy and
    per_class_iou {name: IoU or None} from pooled pixel counts."""
    ious = class_ious(matrix)
    total = matrix.sum()
    present = ious[~np.isnan(ious)]
    return {
        "mean_iou": float(present.mean()) if present.size else float("nan"),
        "pixel_accuracy": float(np.trace(matrix) / total) if total else float("nan"),
        "per_class_iou": {
            str(n): (None if np.isnan(v) else float(v)) for n, v in zip(names, ious, strict=True)
        },
    }
