"""Background polarity: is a data set's background darker or lighter than its content?"""

from __future__ import annotations

import numpy as np

# A data set's background: dark (light things on black), light, or none (never invert).
POLARITIES = ("dark", "light", "none")


def detect_polarity(
    images: np.ndarray, sample: int = 1000, seed: int = 0, margin: float = 4.0
) -> str | None:
    """Say whether the images' background is darker or lighter than their content.

    Compares, per image, the mean brightness of a border ring (10% of the side) with
    the mean of the whole image, over a sample of images. Fashion-MNIST (light clothes
    on black) is "dark"; product photos on white are "light". Predict uses this to
    notice user images of the opposite polarity.

    Args:
        images: uint8 (n, h, w, c).
        sample: most images looked at.
        seed: which images are sampled.
        margin: grey levels (0-255) of difference below which an image is unclear.

    Returns:
        "dark" or "light" when at least 80% of the sample agrees, else None.
    """
    n = len(images)
    if n == 0 or images.shape[1] < 3 or images.shape[2] < 3:
        return None
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    gray = np.asarray(images[idx], dtype=np.float32).mean(axis=-1)
    h, w = gray.shape[1:]
    b = max(1, round(min(h, w) * 0.1))
    ring = np.ones((h, w), dtype=bool)
    ring[b : h - b, b : w - b] = False
    diff = gray[:, ring].mean(axis=1) - gray.reshape(len(gray), -1).mean(axis=1)
    if (diff < -margin).mean() >= 0.8:
        return "dark"
    if (diff > margin).mean() >= 0.8:
        return "light"
    return None
