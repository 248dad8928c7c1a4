"""Benchmark: multi-label pseudo-labels and a start from a single-label bundle, on real images.

The Planet-format set of :mod:`bench_multilabel` (Fashion-MNIST garments in 2x2
canvases, tags the garment classes on each, test answers kept apart), with a SMALL
labelled set, all scored by the hidden test's mean F2 per image (Planet's score) and
mAP (the ranking, free of the thresholds fitted on a small val split) against the same
recipe started fresh on the labelled set alone (the baseline, same run):

1. Pseudo-labels: a large unlabelled pool of canvases (its answers kept apart too) is
   predicted by the baseline, ``prep DATA POOL-PREDS --pseudo`` takes the images whose
   every label is sure (p >= P or p <= 1 - P; a round for each P given), and the
   recipe is trained again on the labelled set plus those. Also: how many pool images
   were taken, and how right their label sets were against the pool's hidden answers
   (beside the baseline's decided labels on the whole pool).
2. From a bundle: a single-label small-cnn trained on single garments, each in a random
   cell of a blank canvas (the canvases' size and scale: a bundle trains further only
   at its own input size), then ``train DATA --weights PRE/model.keras`` on the
   labelled canvases (its body kept, a new sigmoid head), same epochs as the baseline.

Usage: nice -n 10 python benchmarks/bench_multilabel_more.py [--labelled 600]
    [--pool 3000] [--test 1000] [--pretrain 10000] [--epochs 15] [--batch-size 64]
    [--seed 0] [--min-confidence 0.9 0.7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _cli import imgkit
from _table import print_table
from bench_multilabel import CELL, TAGS, build, mean_f2, read_idx, run, tag_sets
from bench_multilabel_cv import score
from PIL import Image

from imgkit.train.multilabel_scores import average_precision


def split_pool(root: Path, n_pool: int) -> None:
    """Move the last ``n_pool`` of build()'s train canvases to ``pool-jpg/``, unlabelled:
    their answers go to ``hidden/pool.csv``, train_v2.csv keeps the rest."""
    train = pd.read_csv(root / "train_v2.csv", keep_default_na=False)
    labelled, pool = train.iloc[:-n_pool], train.iloc[-n_pool:]
    (root / "pool-jpg").mkdir()
    for name in pool["image_name"]:
        (root / "train-jpg" / f"{name}.jpg").rename(root / "pool-jpg" / f"{name}.jpg")
    labelled.to_csv(root / "train_v2.csv", index=False)
    pool.to_csv(root / "hidden" / "pool.csv", index=False)


def write_single(folder: Path, n: int, seed: int) -> None:
    """``n`` canvases the size of build()'s, each one train garment in a random cell,
    in class folders (``folder/<tag>/``): a single-label set at the canvases' scale."""
    garments, classes = read_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    for i in range(n):
        k, cell = rng.integers(len(garments)), int(rng.integers(4))
        r, c = divmod(cell, 2)
        canvas = np.zeros((2 * CELL, 2 * CELL), np.uint8)
        canvas[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = garments[k]
        out = folder / TAGS[classes[k]]
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).convert("RGB").save(out / f"single_{i}.jpg", quality=95)


def exact_share(predicted: list[set], truth: list[set]) -> float:
    """The share of images whose label set is exactly right (nan for none)."""
    if not predicted:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def pool_truth(root: Path) -> dict[str, set]:
    """The pool's hidden answers: image name -> its tags."""
    answers = pd.read_csv(root / "hidden" / "pool.csv", keep_default_na=False)
    return dict(zip(answers["image_name"], tag_sets(answers["tags"]), strict=True))


def pseudo_quality(root: Path, data: Path) -> dict[str, float]:
    """How many pool images prep took into ``data`` and how right their label sets were
    against the pool's hidden answers (mean F2, share exactly right)."""
    truth = pool_truth(root)
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    # prep writes the pseudo column only when it took at least one image
    flag = manifest["pseudo"] if "pseudo" in manifest else pd.Series("", index=manifest.index)
    taken = manifest[flag.astype(str).str.lower().isin(["1", "true"])]
    got = [set(str(v).split()) for v in taken["label"]]
    want = [truth[Path(p).stem] for p in taken["path"]]
    return {
        "taken": len(taken),
        "f2": mean_f2(got, want) if got else float("nan"),
        "exact": exact_share(got, want),
    }


def pool_quality(root: Path) -> tuple[float, float]:
    """The baseline's decided labels on the whole pool: (mean F2, share exactly right)."""
    truth = pool_truth(root)
    preds = pd.read_csv(root / "pool-preds.csv", keep_default_na=False)
    got = tag_sets(preds["labels"])
    want = [truth[Path(p).stem] for p in preds["path"]]
    return mean_f2(got, want), exact_share(got, want)


def test_map(root: Path, name: str) -> float:
    """The hidden test's mAP (each label's average precision, averaged) of score()'s
    ``name``-preds.csv: the ranking alone, no threshold."""
    preds = pd.read_csv(root / f"{name}-preds.csv", keep_default_na=False)
    answers = pd.read_csv(root / "hidden" / "answers.csv", keep_default_na=False)
    truth = dict(zip(answers["image_name"], tag_sets(answers["tags"]), strict=True))
    want = [truth[Path(p).stem] for p in preds["path"]]
    aps = [average_precision(preds[f"p_{t}"].to_numpy(float), np.array([t in w for w in want]))
           for t in TAGS]  # fmt: skip
    return float(np.mean([a for a in aps if a is not None]))


def scores(root: Path, bundle: Path, name: str) -> tuple[float, float]:
    """``bundle``'s hidden-test (mean F2, mAP)."""
    return score(root, bundle, name), test_map(root, name)


def pseudo_round(root: Path, p: float, recipe: list) -> tuple[float, float, float, dict]:
    """prep the baseline's pool predictions at --min-confidence ``p`` onto the labelled
    dataset, train the recipe on it: (test mean F2, mAP, train seconds, pseudo_quality)."""
    data, run_dir = root / f"data-pseudo-{p}", root / f"run-pseudo-{p}"
    imgkit("prep", root / "data", root / "pool-preds.csv", "--pseudo",
           "--min-confidence", p, "-o", data)  # fmt: skip
    seconds = imgkit("train", data, "-o", run_dir, *recipe)
    return *scores(root, run_dir, f"pseudo-{p}"), seconds, pseudo_quality(root, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=int, default=600)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--pretrain", type=int, default=10000, help="single garments")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--seed", type=int, default=0, help="train's --seed, every run")
    parser.add_argument("--min-confidence", type=float, nargs="+", default=[0.9, 0.7],
                        help="prep's --min-confidence, a pseudo round each")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="build and run in this folder (kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        build(root, args.labelled + args.pool, args.test)
        split_pool(root, args.pool)
        size = 2 * CELL
        common = ["--epochs", args.epochs, "--batch-size", args.batch_size, "--seed", args.seed]
        recipe = ["--model", args.model, "--size", size, *common]
        fresh_s = run(root, args.model, size, args.epochs, common[2:])["train"]
        fresh, fresh_map = scores(root, root / "run", "fresh")
        rows = [("fresh, labelled set only (baseline)", f"{fresh:.4f}", "", f"{fresh_map:.4f}",
                 "", f"{fresh_s:.0f}")]  # fmt: skip

        imgkit("predict", root / "run", root / "pool-jpg", "-o", root / "pool-preds.csv")
        notes = []
        for p in args.min_confidence:
            f2, ap, seconds, taken = pseudo_round(root, p, recipe)
            rows.append((f"+ pool pseudo-labels, P {p} ({taken['taken']} taken)",
                         f"{f2:.4f}", f"{f2 - fresh:+.4f}", f"{ap:.4f}", f"{ap - fresh_map:+.4f}",
                         f"{seconds:.0f}"))  # fmt: skip
            notes.append(f"P {p}: {taken['taken']} of {args.pool} pool images taken, their "
                         f"label sets mean F2 {taken['f2']:.4f}, exact "
                         f"{taken['exact']:.1%}")  # fmt: skip

        write_single(root / "single-jpg", args.pretrain, seed=1)
        imgkit("prep", root / "single-jpg", "-o", root / "data-single")
        pre_s = imgkit("train", root / "data-single", "-o", root / "run-single", *recipe)
        pre = json.loads((root / "run-single" / "imgkit.json").read_text())["metrics"]
        bundle_s = imgkit("train", root / "data", "-o", root / "run-bundle",
                          "--weights", root / "run-single" / "model.keras", *common)  # fmt: skip
        bundle, bundle_map = scores(root, root / "run-bundle", "bundle")
        rows.append(("from the single-label bundle", f"{bundle:.4f}", f"{bundle - fresh:+.4f}",
                     f"{bundle_map:.4f}", f"{bundle_map - fresh_map:+.4f}",
                     f"{bundle_s:.0f} (+{pre_s:.0f} pretrain)"))  # fmt: skip

        print(f"{args.labelled} labelled / {args.pool} pool / {args.test} test canvases "
              f"{size}x{size}, {args.model} at {size}, {args.epochs} epochs, batch "
              f"{args.batch_size}, seed {args.seed}; {args.pretrain} single garments "
              f"for the bundle")  # fmt: skip
        print_table(rows, ("run", "test mean F2", "vs baseline", "test mAP", "vs baseline",
                           "train seconds"))  # fmt: skip
        pool_f2, pool_exact = pool_quality(root)
        print(f"baseline's decided labels on the whole pool: mean F2 {pool_f2:.4f}, "
              f"exact {pool_exact:.1%}")  # fmt: skip
        print("pseudo-labels: " + "; ".join(notes))
        print(f"single-label bundle: val accuracy {pre['val']['accuracy']:.3f}, "
              f"test {pre['test']['accuracy']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
