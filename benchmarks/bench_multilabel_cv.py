"""Benchmark: multi-label K-fold cross-validation against one split, on real images.

The Planet-format set of :mod:`bench_multilabel` (Fashion-MNIST garments in 2x2
canvases, tags the garment classes on each, test answers kept apart) run two ways
with the same model, size and epochs: the single-split default (prep with its val and
test splits, train, predict, submit) and ``prep --folds K`` + ``imgkit cv`` (the fold
models averaged, temperature and per-label thresholds fitted on the OOF predictions),
both scored by the hidden test's mean F2 per image (Planet's score).

Usage: nice -n 10 python benchmarks/bench_multilabel_cv.py [--train 1500] [--test 1000]
    [--folds 3] [--epochs 8] [--model small-cnn] [--threshold f2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from _cli import imgkit
from _table import print_table
from bench_multilabel import CELL, build, mean_f2, tag_sets


def score(root: Path, bundle: Path, name: str) -> float:
    """The hidden test's mean F2 of ``bundle``'s submission."""
    preds, sub = root / f"{name}-preds.csv", root / f"{name}-submission.csv"
    imgkit("predict", bundle, root / "test-jpg", "-o", preds)
    imgkit("submit", preds, "--sample", root / "sample_submission_v2.csv", "-o", sub)
    answers = pd.read_csv(root / "hidden" / "answers.csv", keep_default_na=False)
    got = pd.read_csv(sub, keep_default_na=False)
    given = dict(zip(got["image_name"], tag_sets(got["tags"]), strict=True))
    return mean_f2([given[n] for n in answers["image_name"]], tag_sets(answers["tags"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--size", type=int, default=2 * CELL)
    parser.add_argument("--threshold", default="auto", help="train's and cv's --threshold")
    parser.add_argument("--keep", type=Path, help="build and run in this folder (kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        build(root, args.train, args.test)
        recipe = ["--model", args.model, "--size", args.size, "--epochs", args.epochs,
                  "--threshold", args.threshold]  # fmt: skip
        csv, images = root / "train_v2.csv", root / "train-jpg"
        imgkit("prep", csv, "--images", images, "-o", root / "data")
        single = imgkit("train", root / "data", "-o", root / "run", *recipe)
        single_f2 = score(root, root / "run", "single")
        imgkit("prep", csv, "--images", images, "-o", root / "data-folds", "--folds", args.folds)
        cv = imgkit("cv", root / "data-folds", "-o", root / "cv", *recipe)
        cv_f2 = score(root, root / "cv", "cv")
        report = json.loads((root / "cv" / "cv.json").read_text())
        print(f"{args.train} train / {args.test} test images, {args.model} at {args.size}, "
              f"{args.epochs} epochs, --threshold {args.threshold}, "
              f"{args.folds} folds")  # fmt: skip
        print_table(
            [("single split (default val/test)", f"{single_f2:.4f}", f"{single:.0f}"),
             (f"{args.folds}-fold cv, folds averaged", f"{cv_f2:.4f}", f"{cv:.0f}"),
             ("cv out of fold (all train images)", f"{report['oof']['mean_f2']:.4f}", "")],
            ("run", "test mean F2", "train seconds"),
        )  # fmt: skip


if __name__ == "__main__":
    main()
