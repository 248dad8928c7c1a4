"""Tiny synthetic segmentation data: bright discs on a dark, noisy background."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def disc_pair(rng: np.random.Generator, size: tuple[int, int] = (48, 48)):
    """One (RGB uint8 image, bool mask) pair: one or two bright discs on dark noise."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(1, 3))):
        r = rng.uniform(0.12, 0.25) * min(h, w)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    base = rng.normal(40, 12, size=(h, w))
    base[mask] = rng.normal(200, 12, size=int(mask.sum()))
    pixels = np.clip(base, 0, 255).astype(np.uint8)
    return np.stack([pixels] * 3, axis=-1), mask


def write_disc_pairs(
    root: str | os.PathLike, n: int = 12, size: tuple[int, int] = (48, 48), seed: int = 0
) -> tuple[Path, Path]:
    """Write ``root/images/<i>.png`` and ``root/masks/<i>.png`` (0/255); return both folders."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, mask = disc_pair(rng, size)
        Image.fromarray(img).save(images / f"s{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"s{i:03d}.png")
    return images, masks
