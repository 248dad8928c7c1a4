"""Benchmark: a default multi-label run on real images, scored like Planet (mean F2).

Each image is a canvas of 2x2 cells, each cell holding a real Fashion-MNIST garment
(the IDX files of Debian's dataset-fashion-mnist) with probability 0.5, at least one
per image; its tags are the distinct garment classes on it. The set is written the
way Kaggle's Planet ships it: ``train-jpg/`` with ``train_v2.csv`` (``image_name,tags``,
names without extension), ``test-jpg/`` with ``sample_submission_v2.csv``, and the test
answers kept apart in ``hidden/answers.csv``, read only to score. The run is the
documented one (prep, train, predict, submit) with only the model, size and epochs
chosen; the submission's mean F2 per image (Planet's score) is compared with that of
predicting, for every image, the most common tags (the k most frequent train tags,
k chosen for the best train F2: the strongest constant answer).

Usage: nice -n 10 python benchmarks/bench_multilabel.py [--train 3000] [--test 1000]
    [--epochs 8] [--model small-cnn] [--threshold f2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _cli import imgkit
from _table import print_table
from PIL import Image

IDX = Path("/usr/share/datasets/fashion-mnist")
TAGS = ["t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle-boot"]  # fmt: skip
CELL = 28


def read_idx(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's garments (n, 28, 28) uint8 and their class indices."""
    with gzip.open(IDX / images) as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, CELL, CELL)
    with gzip.open(IDX / labels) as f:
        classes = np.frombuffer(f.read(), np.uint8, offset=8)
    return pixels, classes


def write_split(folder: Path, prefix: str, n: int, garments, classes, rng) -> pd.DataFrame:
    """``n`` canvases of 2x2 cells in ``folder``; their names and space-separated tags."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        filled = rng.random(4) < 0.5
        if not filled.any():
            filled[rng.integers(4)] = True
        canvas = np.zeros((2 * CELL, 2 * CELL), np.uint8)
        tags = set()
        for cell in np.flatnonzero(filled):
            k = rng.integers(len(garments))
            r, c = divmod(int(cell), 2)
            canvas[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = garments[k]
            tags.add(TAGS[classes[k]])
        name = f"{prefix}_{i}"
        Image.fromarray(canvas).convert("RGB").save(folder / f"{name}.jpg", quality=95)
        rows.append((name, " ".join(sorted(tags))))
    return pd.DataFrame(rows, columns=["image_name", "tags"])


def build(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """The Planet-format set: train from Fashion-MNIST's train garments, test from its
    test garments (no garment image is on both sides)."""
    rng = np.random.default_rng(seed)
    train = write_split(root / "train-jpg", "train", n_train,
                        *read_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                        rng)  # fmt: skip
    test = write_split(root / "test-jpg", "test", n_test,
                       *read_idx("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
                       rng)  # fmt: skip
    train.to_csv(root / "train_v2.csv", index=False)
    test.assign(tags="clear").sample(frac=1, random_state=seed).to_csv(
        root / "sample_submission_v2.csv", index=False
    )
    (root / "hidden").mkdir()
    test.to_csv(root / "hidden" / "answers.csv", index=False)


def mean_f2(predicted: list[set], truth: list[set]) -> float:
    """Planet's score: F2 per image, averaged (1 for an image with no tag given none)."""
    scores = []
    for p, t in zip(predicted, truth, strict=True):
        tp = len(p & t)
        if not p and not t:
            scores.append(1.0)
            continue
        precision = tp / len(p) if p else 0.0
        recall = tp / len(t) if t else 0.0
        den = 4 * precision + recall
        scores.append(5 * precision * recall / den if den else 0.0)
    return float(np.mean(scores))


def tag_sets(column) -> list[set]:
    return [set(str(v).split()) for v in column.fillna("")]


def most_common_baseline(train: pd.DataFrame, truth: list[set]) -> tuple[float, int]:
    """The mean F2 on ``truth`` of the constant answer: the k most frequent train tags,
    k chosen on train."""
    sets = tag_sets(train["tags"])
    ranked = pd.Series([t for s in sets for t in s]).value_counts().index.tolist()
    best_k = max(range(1, len(ranked) + 1),
                 key=lambda k: mean_f2([set(ranked[:k])] * len(sets), sets))  # fmt: skip
    return mean_f2([set(ranked[:best_k])] * len(truth), truth), best_k


def run(root: Path, model: str, size: int, epochs: int, extra: list[str]) -> dict[str, float]:
    seconds = {
        "prep": imgkit("prep", root / "train_v2.csv", "--images", root / "train-jpg",
                       "-o", root / "data"),
        "train": imgkit("train", root / "data", "-o", root / "run", "--model", model,
                        "--size", size, "--epochs", epochs, *extra),
        "predict": imgkit("predict", root / "run", root / "test-jpg", "-o", root / "preds.csv"),
        "submit": imgkit("submit", root / "preds.csv", "--sample",
                         root / "sample_submission_v2.csv", "-o", root / "submission.csv"),
    }  # fmt: skip
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--size", type=int, default=2 * CELL)
    parser.add_argument("--threshold", help="train's --threshold (default: train's own)")
    parser.add_argument("--keep", type=Path, help="build and run in this folder (kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        build(root, args.train, args.test)
        extra = ["--threshold", args.threshold] if args.threshold else []
        seconds = run(root, args.model, args.size, args.epochs, extra)
        answers = pd.read_csv(root / "hidden" / "answers.csv", keep_default_na=False)
        sub = pd.read_csv(root / "submission.csv", keep_default_na=False)
        got = dict(zip(sub["image_name"], tag_sets(sub["tags"]), strict=True))
        truth = tag_sets(answers["tags"])
        score = mean_f2([got[n] for n in answers["image_name"]], truth)
        train = pd.read_csv(root / "train_v2.csv", keep_default_na=False)
        base, k = most_common_baseline(train, truth)
        print(f"{args.train} train / {args.test} test images {2 * CELL}x{2 * CELL}, "
              f"{args.model} at {args.size}, {args.epochs} epochs, "
              f"threshold {args.threshold or 'default'}")  # fmt: skip
        print_table(
            [("submission (imgkit)", f"{score:.4f}"),
             (f"most common tags (top {k})", f"{base:.4f}")],
            ("answer", "mean F2"),
        )  # fmt: skip
        print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
