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


# Multi-class: a disc (class 1, bright red-ish) and a square (class 2, bright green-ish).
CLASS_COLORS = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]


def shapes_pair(rng: np.random.Generator, size: tuple[int, int] = (48, 48)):
    """One (RGB uint8 image, uint8 class values) pair: a disc (1) and a square (2)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    values = np.zeros((h, w), dtype=np.uint8)
    r = rng.uniform(0.12, 0.2) * min(h, w)
    cy, cx = rng.uniform(r, h - r), rng.uniform(r, w / 2)
    values[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    s = int(rng.uniform(0.2, 0.3) * min(h, w))
    y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(w // 2, w - s))
    values[y0 : y0 + s, x0 : x0 + s] = 2
    image = rng.normal(40, 10, size=(h, w, 3))
    for k in (1, 2):
        image[values == k] = np.array(CLASS_COLORS[k]) + rng.normal(
            0, 10, (int((values == k).sum()), 3)
        )
    return np.clip(image, 0, 255).astype(np.uint8), values


def write_shape_pairs(
    root: str | os.PathLike,
    n: int = 12,
    size: tuple[int, int] = (48, 48),
    seed: int = 0,
    encoding: str = "index",
) -> tuple[Path, Path, Path]:
    """Write images, masks (``index``, ``palette`` or ``rgb``) and classes.txt + colors.txt.

    Returns (images folder, masks folder, root).
    """
    root = Path(root)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, values = shapes_pair(rng, size)
        Image.fromarray(img).save(images / f"m{i:03d}.jpg", quality=95)
        write_encoded_mask(masks / f"m{i:03d}.png", values, encoding)
    (root / "classes.txt").write_text("background\ndisc\nsquare\n")
    (root / "colors.txt").write_text(
        "# name R G B\n"
        + "".join(
            f"{n} {r} {g} {b}\n"
            for n, (r, g, b) in zip(("background", "disc", "square"), CLASS_COLORS, strict=True)
        )
    )
    return images, masks, root


def write_encoded_mask(path: Path, values: np.ndarray, encoding: str) -> None:
    """Class values as an index (L), palette (P, shuffled-looking palette) or RGB PNG."""
    if encoding == "index":
        Image.fromarray(values, mode="L").save(path)
    elif encoding == "palette":
        img = Image.fromarray(values, mode="L").convert("P")
        img.putpalette([9, 9, 9, 250, 250, 0, 0, 0, 250] + [0] * (768 - 9))
        img.save(path)
    elif encoding == "rgb":
        Image.fromarray(np.array(CLASS_COLORS, np.uint8)[values]).save(path)
    else:
        raise ValueError(encoding)
