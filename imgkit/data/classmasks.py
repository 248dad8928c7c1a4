"""Multi-class masks: class tables, reading each encoding, palette PNGs, per-class IoU.

A multi-class mask gives each pixel a class value: 0 the background, 1..C the named
classes (``imgkit prep --mask-classes FILE``, one name per line for the values 0..C).
Files come as single-channel index PNGs (the value is the class), palette PNGs (the
palette index is the class) or RGB images whose colours ``--mask-colors FILE`` maps to
the classes (lines ``NAME R G B``, the first line value 0). :func:`read_class_mask`
turns each into a uint8 (height, width) array of values, or says why it cannot: a
value outside the named classes, a colour not in the table. Datasets and ``segment``
store them as palette PNGs whose indices are the values and whose palette is the
classes' colours, so any image viewer shows them in colour. No TensorFlow here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.tiff_quiet import quiet_libtiff
from imgkit.errors import BadImageError, BadInputError
from imgkit.fileio import atomic_path

# At least background and two classes: one foreground class is a binary mask, which
# imgkit reads without a class table (0/255, palette or two-colour masks).
MIN_CLASSES = 3
MAX_CLASSES = 256  # a palette PNG's indices
_SHOW = 3  # how many stray values or colours a reject reason names


@dataclass(frozen=True)
class MaskClasses:
    """The classes of a multi-class segmentation dataset.

    Attributes:
        names: class names for the mask values 0..C, background first.
        colors: an (R, G, B) per class: from --mask-colors, else a default palette.
        by_colour: masks are keyed by colour (--mask-colors was given): RGB and palette
            masks are read by their pixels' colours, not by palette index.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    by_colour: bool = False

    def info(self) -> dict:
        """What dataset.json and imgkit.json record."""
        return {"mask_classes": list(self.names), "mask_colors": [list(c) for c in self.colors]}


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


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{what} {path}: cannot read it ({e})") from e
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _check_names(names: list[str], path: Path, what: str) -> None:
    if len(names) < MIN_CLASSES:
        raise BadInputError(
            f"{what} {path}: {len(names)} class(es); a multi-class mask needs the background "
            "and at least two classes (binary masks need no class table)"
        )
    if len(names) > MAX_CLASSES:
        raise BadInputError(f"{what} {path}: {len(names)} classes, at most {MAX_CLASSES}")
    seen = set()
    for name in names:
        if name in seen:
            raise BadInputError(f"{what} {path}: class {name!r} is named twice")
        seen.add(name)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a --mask-classes file: one per line, for the values 0, 1, ...

    Blank lines and lines starting with # are skipped.
    """
    path = Path(path)
    names = [line for _, line in _lines(path, "--mask-classes")]
    _check_names(names, path, "--mask-classes")
    return names


def read_color_table(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(names, colours) from a --mask-colors file: lines ``NAME R G B``, value 0 first.

    A name may hold spaces (the last three fields are the colour); blank lines and
    lines starting with # are skipped.
    """
    path = Path(path)
    names, colors = [], []
    for n, line in _lines(path, "--mask-colors"):
        fields = line.replace(",", " ").split()
        try:
            rgb = tuple(int(v) for v in fields[-3:])
        except ValueError:
            rgb = ()
        if len(fields) < 4 or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise BadInputError(
                f"--mask-colors {path}:{n}: expected 'NAME R G B' with R, G, B in 0..255, "
                f"got {line!r}"
            )
        if rgb in colors:
            raise BadInputError(f"--mask-colors {path}:{n}: colour {rgb} is given twice")
        names.append(" ".join(fields[:-3]))
        colors.append(rgb)
    _check_names(names, path, "--mask-colors")
    return names, colors


def mask_classes_from(
    classes_file: str | os.PathLike | None, colors_file: str | os.PathLike | None
) -> MaskClasses | None:
    """The class table prep's --mask-classes and --mask-colors give (None: binary)."""
    if classes_file is None and colors_file is None:
        return None
    if colors_file is None:
        names = read_class_names(classes_file)
        return MaskClasses(tuple(names), tuple(default_colors(len(names))))
    names, colors = read_color_table(colors_file)
    if classes_file is not None:
        listed = read_class_names(classes_file)
        if listed != names:
            raise BadInputError(
                f"--mask-classes {classes_file} and --mask-colors {colors_file} name other "
                f"classes ({', '.join(listed)} vs {', '.join(names)}); give the names once"
            )
    return MaskClasses(tuple(names), tuple(colors), by_colour=True)


def class_table(masks, classes_file, colors_file) -> MaskClasses | None:
    """prep's class table, read before any image is: None for binary masks.

    Raises:
        BadInputError: a class file without --masks, or a bad class file.
    """
    if masks is None:
        if classes_file is not None or colors_file is not None:
            raise BadInputError("--mask-classes and --mask-colors describe --masks; give --masks")
        return None
    return mask_classes_from(classes_file, colors_file)


def _by_colour(rgb: np.ndarray, table: MaskClasses, path: Path) -> np.ndarray:
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    known = np.array([(r << 16) | (g << 8) | b for r, g, b in table.colors], dtype=np.int64)
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
    return order[at].astype(np.uint8)


def read_class_mask(path: str | os.PathLike, table: MaskClasses) -> np.ndarray:
    """A multi-class mask file as uint8 class values (height, width).

    Index (grayscale) files give their values; palette files their palette indices,
    or, with a colour table, their pixels' colours; RGB files need the colour table.

    Raises:
        BadImageError: unreadable, an RGB mask without --mask-colors, a colour not in
            the table, or a value outside 0..C; the reason says which.
    """
    path = Path(path)
    quiet_libtiff()
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "PA") and not table.by_colour:
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
    if values.size and (values.max() > top or values.min() < 0):
        stray = np.unique(values[(values > top) | (values < 0)])[:_SHOW].tolist()
        raise BadImageError(
            str(path),
            f"mask value {', '.join(map(str, stray))} outside the {top + 1} named classes "
            f"(0..{top})",
        )
    return values.astype(np.uint8)


def read_index_png(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """A stored or predicted index mask (palette or grayscale PNG) as uint8 values.

    Raises:
        BadImageError: unreadable, not single-channel, or a value of ``num_classes``
            or more.
    """
    table = MaskClasses(tuple(str(i) for i in range(num_classes)), ())
    return read_class_mask(path, table)


def mask_loader(k: int):
    """``fn(path, size)``: a dataset's stored mask as uint8 (height, width, 1) at ``size``:
    class values for ``k`` classes (multi-class masks), else 0/1 (``k`` 0: binary)."""
    if not k:
        from imgkit.data.masks import load_mask_array

        return load_mask_array
    return lambda path, size: resize_index(read_index_png(path, k), size)[..., None]


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
    """The k x k pixel counts: row the true class, column the predicted one."""
    t = np.asarray(truth, dtype=np.int64).reshape(-1)
    p = np.asarray(pred, dtype=np.int64).reshape(-1)
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
