"""Whether to invert an image before a classifier sees it: by its background's brightness
against the training images' (the bundle's polarity), so a photo of a dark shirt on white
paper reaches a Fashion-MNIST model as a light shirt on black."""

from __future__ import annotations

import numpy as np

from imgkit.infer.options import INVERT_MODES


def border_mean(array: np.ndarray) -> float:
    """Mean brightness (0-255, all channels) of an image's border ring.

    The ring is 10% of the shorter side (at least one pixel), the same ring training
    uses to find the bundle's polarity, so both judge "background" alike.
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    h, w = a.shape
    b = max(1, round(min(h, w) * 0.1))
    if 2 * b >= min(h, w):
        return float(a.mean())
    ring = np.ones((h, w), dtype=bool)
    ring[b : h - b, b : w - b] = False
    return float(a[ring].mean())


def should_invert(array: np.ndarray, polarity: str | None, mode: str = "auto") -> bool:
    """Whether to invert an image before the model sees it.

    Args:
        array: the image already converted to the bundle's size and channels.
        polarity: the training images' background: "dark" (light objects on black,
            like Fashion-MNIST), "light", or None (unknown: never invert in auto).
        mode: "auto" (invert when the background is the opposite of ``polarity``),
            "always" or "never".
    """
    if mode == "always":
        return True
    if mode == "never" or polarity not in ("dark", "light"):
        return False
    if mode != "auto":
        raise ValueError(f"invert mode must be one of {INVERT_MODES} (got {mode!r})")
    background = border_mean(array)
    return background > 127 if polarity == "dark" else background < 128
