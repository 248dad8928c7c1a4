"""Benchmark: transfer-learning recipes on the hard real benchmark, against a linear floor.

The data is the hard Kaggle-format fixture (``cli/make_dvc_fixture.py --source
fashion``: Fashion-MNIST Shirts against T-shirts rendered as RGB product photos at
Kaggle-like sizes, 1,400 labelled and 600 held out). Each recipe runs as a user would:
``imgkit prep`` of both archives, ``imgkit train``, ``imgkit tta`` (10 views) on the
test archive and ``imgkit submit --clip 0.005``; the score is the submission's log
loss on the held-out labels, as Kaggle scores it.

The floor, measured in the same run: an L2 logistic regression on pooled frozen
MobileNetV2 features of ``block_13_expand_relu`` (standardised, the penalty chosen on
the val split), the plain model a careful user would fit first. The bar: the default
recipe beats both the floor and the seed's recipe at every size.

Usage: python benchmarks/bench_recipes.py [--sizes 96 160] [--work DIR] [--count 2000]
Needs Debian's dataset-fashion-mnist, scipy (with scikit-image) and the MobileNetV2
ImageNet file (../shared/weights, linked into the Keras cache by this script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _table import print_table

REPO = Path(__file__).resolve().parents[1]
SHARED_FILE = (
    REPO.parent
    / "shared"
    / "weights"
    / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
)
FLOOR_LAYER = "block_13_expand_relu"
# key -> (label, extra `imgkit train` options); the model is mobilenetv2 in all.
RECIPES = {
    "default": ("default (head first, then fine-tuning)", []),
    "head": ("head only, cached block-13 features",
             ["--fine-tune-last", "0", "--augment", "none", "--lr", "1e-3"]),
    "seed": ("seed 001 (--recipe seed)", ["--recipe", "seed"]),
}  # fmt: skip
FLOOR = "linear floor (LR on block_13 features)"
BARRED = ("seed",)  # the default must beat these (when run) and the floor


def run(cmd: list[str], env: dict) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def build(work: Path, count: int, env: dict) -> tuple[Path, Path, pd.Series]:
    """The fixture, prepped: (labelled dataset, test dataset, held-out truth by id)."""
    fixture = work / "fixture"
    if not (fixture / "test_labels.csv").is_file():
        run([sys.executable, str(REPO / "cli" / "make_dvc_fixture.py"), str(fixture),
             "--source", "fashion", "--count", str(count)], env)  # fmt: skip
    data, test = work / "data", work / "test-data"
    if not (data / "dataset.json").is_file():
        run(["imgkit", "prep", str(fixture / "train.zip"), "-o", str(data), "--val", "0.2",
             "--test", "0", "--overwrite"], env)  # fmt: skip
    if not (test / "dataset.json").is_file():
        run(["imgkit", "prep", str(fixture / "test.zip"), "-o", str(test), "--overwrite"], env)
    truth = pd.read_csv(fixture / "test_labels.csv").set_index("id")["label"]
    return data, test, truth


def score_recipe(name, extra, size, data, test, truth, work, env) -> dict:
    run_dir = work / f"run-{size}-{abs(hash(name)) % 10**6}"
    t0 = time.perf_counter()
    run(["imgkit", "train", str(data), "-o", str(run_dir), "--model", "mobilenetv2",
         "--size", str(size), "--overwrite", *extra], env)  # fmt: skip
    seconds = time.perf_counter() - t0
    tta, sub = run_dir.with_suffix(".tta.csv"), run_dir.with_suffix(".submission.csv")
    run(["imgkit", "tta", str(run_dir), str(test), "--split", "unlabeled", "-n", "10",
         "-o", str(tta)], env)  # fmt: skip
    run(["imgkit", "submit", str(tta), "-o", str(sub), "--clip", "0.005"], env)
    p = pd.read_csv(sub).set_index("id")["label"].loc[truth.index].to_numpy(float)
    y = truth.to_numpy(float)
    meta = json.loads((run_dir / "imgkit.json").read_text())
    return {"loss": log_loss(p, y), "accuracy": float(np.mean((p > 0.5) == y)),
            "seconds": seconds, "epochs": meta.get("epochs_run")}  # fmt: skip


def _images(folder: Path, split: str, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    from PIL import Image

    m = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    m = m[m["split"] == split]
    x = np.stack([
        np.asarray(Image.open(folder / p).convert("RGB").resize((size, size), Image.BILINEAR))
        for p in m["path"]
    ])  # fmt: skip
    return x, m


def _logistic(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    from scipy.optimize import minimize

    def objective(w):
        z = x @ w[:-1] + w[-1]
        p = 1 / (1 + np.exp(-z))
        loss = np.mean(np.logaddexp(0, z) - y * z) + lam * np.sum(w[:-1] ** 2)
        grad = np.append(x.T @ (p - y) / len(y) + 2 * lam * w[:-1], np.mean(p - y))
        return loss, grad

    return minimize(objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x


def score_floor(size, data, test, truth) -> dict:
    """Logistic regression on pooled frozen block_13 features; penalty chosen on val."""
    import keras

    t0 = time.perf_counter()
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                          weights=None)  # fmt: skip
    base.load_weights(str(SHARED_FILE))
    pooled = keras.layers.GlobalAveragePooling2D()(base.get_layer(FLOOR_LAYER).output)
    extractor = keras.Model(base.input, pooled)
    feats = {}
    for key, folder, split in (("train", data, "train"), ("val", data, "val"),
                               ("test", test, "unlabeled")):  # fmt: skip
        x, m = _images(folder, split, size)
        feats[key] = (extractor.predict(x / 127.5 - 1, batch_size=64, verbose=0), m)
    mu, sd = feats["train"][0].mean(0), feats["train"][0].std(0) + 1e-6
    std = {k: (f - mu) / sd for k, (f, _) in feats.items()}
    y_train = (feats["train"][1]["label"] == "dog").to_numpy(float)
    y_val = (feats["val"][1]["label"] == "dog").to_numpy(float)
    best = None
    for lam in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1):
        w = _logistic(std["train"], y_train, lam)
        val = log_loss(1 / (1 + np.exp(-(std["val"] @ w[:-1] + w[-1]))), y_val)
        if best is None or val < best[0]:
            best = (val, w)
    w = best[1]
    p = np.clip(1 / (1 + np.exp(-(std["test"] @ w[:-1] + w[-1]))), 0.005, 0.995)
    ids = [int(Path(p_).stem) for p_ in feats["test"][1]["path"]]
    y = truth.loc[ids].to_numpy(float)
    return {"loss": log_loss(p, y), "accuracy": float(np.mean((p > 0.5) == y)),
            "seconds": time.perf_counter() - t0, "epochs": ""}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 160])
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES),
        help="which recipes to run (the seed's is the slowest: 5x the default's time)",
    )  # fmt: skip
    args = parser.parse_args()
    if not SHARED_FILE.is_file():
        sys.exit(f"needs the MobileNetV2 ImageNet file: {SHARED_FILE} (../shared/weights)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-recipes-"))
    keras_home = work / "keras-home"
    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERAS_HOME": str(keras_home)}
    os.environ["KERAS_HOME"] = str(keras_home)
    data, test, truth = build(work, args.count, env)
    rows, failed = [], []
    for size in args.sizes:
        cached = (
            keras_home
            / "models"
            / (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5")
        )
        if not cached.exists():
            cached.symlink_to(SHARED_FILE)
        floor = score_floor(size, data, test, truth)
        results = {FLOOR: floor}
        for key in args.recipes:
            label, extra = RECIPES[key]
            results[key] = score_recipe(label, extra, size, data, test, truth, work, env)
        for key, r in results.items():
            name = RECIPES[key][0] if key in RECIPES else key
            ratio = f"{r['loss'] / floor['loss']:.2f}x"
            rows.append((size, name, f"{r['loss']:.4f}", f"{r['accuracy']:.3f}",
                         f"{r['seconds']:.0f}", r["epochs"], ratio))  # fmt: skip
        if "default" not in results:
            continue
        default = results["default"]["loss"]
        for key in (FLOOR, *BARRED):
            if key in results and default >= results[key]["loss"]:
                failed.append(f"{size} px: default {default:.4f} does not beat {key}")
    headers = ("size", "recipe", "test log loss", "accuracy", "seconds", "epochs", "vs floor")
    print_table(rows, headers)
    print(f"(runs in {work})")
    for line in failed:
        print("MISSED:", line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
