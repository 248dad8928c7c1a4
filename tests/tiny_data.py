"""Tiny classification datasets for training tests, written straight into the cache.

The images go into the dataset's decode cache with ``Dataset.store_arrays`` (at the
size the tests train at), so training tests exercise the real dataset and bundle code
without decoding image files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record

SIZE = 12


def squares(n: int, size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 ("bright"): a bright square on black; class 1 ("dim"): a dim one. Noisy."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    x = rng.integers(0, 30, size=(n, size, size, 1))
    q = size // 4
    for i, label in enumerate(y):
        top, left = rng.integers(1, size - 2 * q, size=2)
        x[i, top : top + 2 * q, left : left + 2 * q] = (
            rng.integers(190, 255) if label == 0 else rng.integers(60, 100)
        )
    return x.astype(np.uint8), y


def make_dataset(
    folder: Path,
    n_train: int = 32,
    n_val: int = 8,
    n_test: int = 8,
    size: int = SIZE,
    seed: int = 0,
    classes: tuple[str, ...] = ("bright", "dim"),
    task: str = "classification",
) -> Dataset:
    """Write a dataset folder of :func:`squares` images and fill its cache."""
    splits = {"train": n_train, "val": n_val, "test": n_test}
    records, arrays = [], {}
    for k, (split, n) in enumerate(splits.items()):
        if not n:
            continue
        x, y = squares(n, size, seed=seed * 10 + k)
        arrays[split] = x
        records += [
            Record(path=f"images/{split}/{i}.png", label=classes[label % len(classes)], split=split)
            for i, label in enumerate(y)
        ]
    write_dataset(folder, records, [], task=task, seed=seed)
    ds = Dataset.load(folder)
    for split, x in arrays.items():
        ds.store_arrays(split, x)
    return ds


def make_folded_dataset(
    folder: Path, n: int = 48, folds: int = 3, n_test: int = 12, seed: int = 0
) -> Dataset:
    """A dataset of :func:`squares` with cross-validation folds (as ``prep --folds``
    makes: every labelled image in split train with a fold 1..K, plus a test split)."""
    from imgkit.data.folds import assign_folds

    x, y = squares(n, SIZE, seed=seed)
    labels = [("bright", "dim")[v] for v in y]
    fold_of = assign_folds(labels, folds, seed)
    records = [
        Record(path=f"images/train/{i}.png", label=label, split="train", fold=fold)
        for i, (label, fold) in enumerate(zip(labels, fold_of, strict=True))
    ]
    tx, ty = squares(n_test, SIZE, seed=seed + 7)
    records += [
        Record(path=f"images/test/{i}.png", label=("bright", "dim")[v], split="test")
        for i, v in enumerate(ty)
    ]
    write_dataset(folder, records, [], seed=seed)
    ds = Dataset.load(folder)
    ds.store_arrays("train", x)
    ds.store_arrays("test", tx)
    return ds
