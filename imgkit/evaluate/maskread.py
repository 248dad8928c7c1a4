"""How ``eval`` reads the masks it scores: binary ones checked, multi-class ones by class.

Without a class table a mask is binary (object/background, :func:`imgkit.data.masks.read_mask`),
whose rule (the brighter value is the object; grey levels thresholded at half) would
turn a multi-class mask into nonsense without a word: PASCAL VOC's index 15 and border
255 would score as "object = the border". :func:`check_binary` refuses such a file
first, naming its values and the option that reads it. With a class table (``eval
--mask-classes`` / ``--mask-colors``, the files ``prep`` takes) a plain folder's true
masks are read as ``prep`` reads them (:func:`~imgkit.data.classmasks.read_class_mask`)
and the predictions as ``segment`` writes them (:func:`read_predicted_classes`). No TensorFlow here.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.classmasks import MaskClasses, read_class_mask
from imgkit.errors import BadInputError

# A binary mask's grey levels: 0 and one of these (0/1, 0/255, 16-bit 0/65535).
OBJECT_LEVELS = (1, 255, 65535)
# Lossy files carry compression noise at edges: their grey levels are thresholded as
# before (a class-index mask cannot be stored lossily anyway).
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})
# A value between a mask's lowest and highest covering this share of its pixels, and
# this share of its smaller extreme's, is a class, not an anti-aliased edge's grey level.
EDGE_SHARE = 0.005
EDGE_OF_SMALLER = 0.25
COLOUR_MODES = frozenset({"RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"})
_SHOW = 6  # how many values or colours the refusal names


def _colours(img: Image.Image) -> np.ndarray:
    """A colour mask's distinct colours, each packed as R << 16 | G << 8 | B."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
    return np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])


def _shown(values: np.ndarray, colour: bool) -> str:
    first = values[:_SHOW].tolist()
    text = ", ".join(f"{v >> 16},{(v >> 8) & 255},{v & 255}" if colour else str(v) for v in first)
    return text + (f", ... ({len(values)} in all)" if len(values) > _SHOW else "")


def _grey(img: Image.Image) -> np.ndarray:
    """A grayscale or palette mask's values (palette indices as they are)."""
    if img.mode in ("LA", "PA"):
        return np.asarray(img.getchannel(0), dtype=np.int64)
    return np.asarray(img).astype(np.int64)


def _edge_levels(values: np.ndarray) -> bool:
    """Whether a many-valued mask is a binary one with anti-aliased edges: no value
    between its lowest and highest covers both :data:`EDGE_SHARE` of the pixels and
    :data:`EDGE_OF_SMALLER` of the smaller extreme's, as the grey levels of smoothed
    edges do not, where a class value (VOC's 15 between 0 and the 255 border) covers a
    whole object. :func:`~imgkit.data.masks.read_mask` then repairs it as ``prep``
    does, or refuses it."""
    levels, counts = np.unique(values, return_counts=True)
    inside = (levels != levels[0]) & (levels != levels[-1])
    if not inside.any():
        return False
    bar = max(EDGE_SHARE * values.size, EDGE_OF_SMALLER * min(counts[0], counts[-1]))
    return bool((counts[inside] < bar).all())


def check_binary(path: str | os.PathLike) -> None:
    """Refuse a mask that is not binary before it is read as one.

    A grayscale or palette mask is binary when its values are 0 and at most one of 1,
    255 (or 65535), or when its other values are an anti-aliased edge's grey levels
    (:func:`_edge_levels`); a colour mask when it has at most two colours. Lossy (JPEG, WebP)
    files are left to :func:`~imgkit.data.masks.read_mask`'s repair, and unreadable
    ones to its reason.

    Raises:
        BadInputError: names the file, the values (or colours) found, and
            ``--mask-classes`` (``--mask-colors`` for colours).
    """
    try:
        with Image.open(path) as img:
            if img.format in LOSSY_FORMATS:
                return
            colour = img.mode in COLOUR_MODES
            img_values = None if colour else _grey(img)
            values = _colours(img) if colour else np.unique(img_values)
    except (OSError, ValueError, Image.DecompressionBombError):
        return  # read_mask says why it cannot be read
    if colour:
        if len(values) <= 2:
            return
        raise BadInputError(
            f"{Path(path)}: {len(values)} colours ({_shown(values, True)}): not a binary "
            "mask; score multi-class colour masks with --mask-colors FILE (lines NAME R G B)"
        )
    found = set(values.tolist())
    if any(found <= {0, level} for level in OBJECT_LEVELS) or _edge_levels(img_values):
        return
    raise BadInputError(
        f"{Path(path)}: mask values {_shown(values, False)}: not a binary mask (0/1 or "
        "0/255); score multi-class masks with --mask-classes FILE (one class name per "
        "line for the values 0, 1, ...; a line '255 ignore' for unlabelled pixels)"
    )


def read_predicted_classes(path: str | os.PathLike, table: MaskClasses) -> np.ndarray:
    """A predicted multi-class mask as uint8 class values: palette and grayscale files
    by index (``segment``'s palette PNGs), colour files by the table's colours (needs
    --mask-colors). A prediction never holds an ignored value or colour."""
    plain = replace(table, ignore_values=(), ignore_colors=())
    return read_class_mask(path, plain, palette_by_index=True)
