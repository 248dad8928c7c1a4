"""Tiny synthetic data that tests can make in tmp_path: learnable, fast, offline."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def bar_images(
    n: int, classes: int = 10, size: int = 28, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Light bars on a dark background, one bar position per class, with noise.

    Like Fashion-MNIST in form (uint8, a light object on black) but learnable in one or
    two epochs by a small CNN, so pipeline tests can check that training did something.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = rng.integers(0, 40, size=(n, size, size), dtype=np.uint8)
    band = max(1, size // classes)
    for i, k in enumerate(y):
        top = k * band
        x[i, top : top + band, 2 : size - 2] = rng.integers(180, 255)
    return x, y.astype(np.uint8)


def write_idx(folder: Path, train: int = 300, test: int = 100, seed: int = 0) -> Path:
    """Write the four Fashion-MNIST IDX files (gzip) of synthetic bar images."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", train, seed), ("t10k", test, seed + 1)):
        x, y = bar_images(n, seed=s)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + y.tobytes())
    return folder
