"""A tiny synthetic breast-histopathology (IDC) folder in Kaggle's patient layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Class 0: pale pink stroma; class 1: crowded dark-purple nuclei (what IDC looks like).
COLOURS = {"0": (230, 170, 200), "1": (90, 40, 140)}


def patch(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-25, 25, size=(size, size, 3))
    return np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def make_idc(
    root: Path, patients: dict[str, tuple[int, int]] | None = None, size: int = 32, seed: int = 0
) -> Path:
    """Write ``root/<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<N>.png``.

    Args:
        root: the folder to write.
        patients: {patient id: (negatives, positives)}; default: 10 patients, ~30% positive,
            some mostly positive so every split can hold both classes.
        size: patch side.
        seed: pixel noise.
    """
    if patients is None:
        patients = {
            "10001": (6, 1), "10002": (5, 2), "10003": (6, 0), "10004": (2, 5),
            "10005": (5, 2), "10006": (6, 1), "10007": (1, 5), "10008": (5, 2),
            "10009": (6, 1), "10010": (2, 4),
        }  # fmt: skip
    rng = np.random.default_rng(seed)
    for pid, (neg, pos) in patients.items():
        for label, n in (("0", neg), ("1", pos)):
            for k in range(n):
                path = (
                    root / pid / label / f"{pid}_idx5_x{50 * k}_y{50 * int(label)}_class{label}.png"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(patch(label, size, rng)).save(path)
    return root
