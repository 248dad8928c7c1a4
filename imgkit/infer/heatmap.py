"""Heatmaps as pictures: back to the image's own size, coloured, laid over the image.

A heatmap is a float (h, w) array in [0, 1] (1 = most important) at the model's input
size. :func:`to_own_size` undoes the bundle's resize mode (stretch, pad or crop) so the
map lines up with the image as the user has it; :func:`map_png` is the 8-bit map other
tools read; :func:`overlay_panel` is what a person looks at.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A perceptually ordered dark-blue -> cyan -> yellow -> red ramp (anchors of a
# turbo-like map), interpolated linearly: cold is unimportant, hot is important.
_RAMP = np.array(
    [
        [48, 18, 59],
        [70, 131, 246],
        [27, 229, 181],
        [164, 252, 60],
        [251, 185, 56],
        [226, 70, 10],
        [122, 4, 3],
    ],
    dtype=np.float32,
)
# Overlays are shown at least this many pixels on their short side (a 28 px image
# would be unreadable) and at most this many on the long side.
SHOW_MIN, SHOW_MAX = 192, 768
_CAPTION = 22


def normalise(heat: np.ndarray) -> np.ndarray:
    """``heat`` scaled to [0, 1] by its maximum (all zeros stays zeros)."""
    heat = np.maximum(np.asarray(heat, dtype=np.float32), 0.0)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else np.zeros_like(heat)


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float map resized to (width, height) ``size``, bilinear."""
    img = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def to_own_size(heat: np.ndarray, own: tuple[int, int], resize: str) -> np.ndarray:
    """A model-space map (h, w) brought onto the image's own (width, height).

    "stretch" scales it; "pad" drops the padding the image was centred in, then
    scales; "crop" scales it onto the centre box the model saw and leaves the trimmed
    sides at 0 (the model never saw them). Mirrors :func:`imgkit.data.images.to_array`.
    """
    h, w = heat.shape
    iw, ih = own
    if resize == "pad":
        scale = min(w / iw, h / ih)
        nw, nh = max(1, min(w, round(iw * scale))), max(1, min(h, round(ih * scale)))
        top, left = (h - nh) // 2, (w - nw) // 2
        return resize_map(heat[top : top + nh, left : left + nw], own)
    if resize == "crop":
        if iw * h > ih * w:
            cw, ch = round(ih * w / h), ih
        else:
            cw, ch = iw, round(iw * h / w)
        out = np.zeros((ih, iw), dtype=np.float32)
        left, top = (iw - cw) // 2, (ih - ch) // 2
        out[top : top + ch, left : left + cw] = resize_map(heat, (cw, ch))
        return out
    return resize_map(heat, own)


def gaussian_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """``a`` (h, w) or (h, w, c) blurred over its first two axes by a Gaussian of
    standard deviation ``sigma`` pixels (edges repeated), as float32."""
    out = np.asarray(a, dtype=np.float32)
    if sigma <= 0:
        return out
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(radius, radius) if k == axis else (0, 0) for k in range(out.ndim)]
        padded = np.pad(out, pad, mode="edge")
        out = sum(w * np.take(padded, range(k, k + n), axis=axis) for k, w in enumerate(taps))
    return out.astype(np.float32)


def peak(heat: np.ndarray) -> tuple[int, int]:
    """(x, y) of the map's maximum (the first one in reading order on a tie)."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


def map_png(heat: np.ndarray) -> Image.Image:
    """An 8-bit grayscale image of a [0, 1] map: 255 = most important."""
    return Image.fromarray(np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8), mode="L")


def colourise(heat: np.ndarray) -> np.ndarray:
    """(h, w) in [0, 1] -> (h, w, 3) uint8 on the ramp."""
    pos = np.clip(heat, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - low)[..., None]
    return np.round(_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def blend(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """``heat`` (at the image's size) over ``image``: hot parts coloured, cold ones clear."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    alpha = (0.25 + 0.45 * np.clip(heat, 0, 1))[..., None]
    mixed = base * (1 - alpha) + colourise(heat).astype(np.float32) * alpha
    return Image.fromarray(np.round(mixed).astype(np.uint8))


def _display_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    scale = 1.0
    if min(w, h) < SHOW_MIN:
        scale = SHOW_MIN / min(w, h)
    if max(w, h) * scale > SHOW_MAX:
        scale = SHOW_MAX / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _font():
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def overlay_panel(image: Image.Image, heat: np.ndarray, caption: str) -> Image.Image:
    """The image and the heatmap over it side by side, ``caption`` (class, confidence,
    method) beneath; both scaled to a readable size (small images grow, pixel by pixel).

    Args:
        image: the image at its own size.
        heat: the map at that size, in [0, 1].
        caption: one line of text.
    """
    size = _display_size(image.size)
    smooth = image.size[0] > size[0]
    resample = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    left = image.convert("RGB").resize(size, resample)
    right = blend(image, heat).resize(size, resample)
    gap = 4
    panel = Image.new("RGB", (2 * size[0] + gap, size[1] + _CAPTION), (255, 255, 255))
    panel.paste(left, (0, 0))
    panel.paste(right, (size[0] + gap, 0))
    ImageDraw.Draw(panel).text((4, size[1] + 3), caption, fill=(20, 20, 20), font=_font())
    return panel
