"""Benchmark: an ``imgkit train`` epoch against a bare ``model.fit`` of the same model.

Both train the same registered model, compiled the same way, for the same epochs on
the same decoded images (the dataset's cache, loaded into memory for the baseline),
with the same validation split. imgkit's extra work per epoch is its own shuffle, a
checkpoint and the progress callback; the bar is at most +3% per epoch, measured
between end-of-epoch timestamps so the checkpoint counts.

Data: real Fashion-MNIST from Debian's package when present (``--limit`` images per
split), else synthetic bar images of the same shape.

Usage: python benchmarks/bench_train.py [--limit 12000] [--epochs 4] [--model fashion-cnn]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


BAR_PERCENT = 3.0


def make_dataset(folder: Path, limit: int) -> str:
    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions

    idx = DEBIAN_FASHION
    source = "real Fashion-MNIST"
    if not (idx / "train-images-idx3-ubyte.gz").is_file():
        from synthetic import write_idx

        idx = write_idx(folder / "idx", train=limit, test=max(100, limit // 6))
        source = "synthetic bars"
    prepare(["fashion-mnist"], folder / "data", PrepOptions(idx_dir=str(idx), limit=limit))
    return source


def bare_fit(data: Path, model: str, epochs: int) -> tuple[float, list[float]]:
    """The baseline: what a notebook does with arrays already in memory."""
    import keras

    from imgkit.data.dataset import Dataset
    from imgkit.models import create_model, get_spec

    spec = get_spec(model)
    recipe = spec.recipe  # the training defaults
    ds = Dataset.load(data)
    size, channels = tuple(spec.input_size), spec.channels
    x = np.asarray(ds.arrays("train", size, channels))
    y = ds.labels("train")
    xv, yv = np.asarray(ds.arrays("val", size, channels)), ds.labels("val")

    class Timer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter())

    times: list[float] = []
    t0 = time.perf_counter()
    keras.utils.set_random_seed(0)
    net = create_model(model, len(ds.classes))
    steps = math.ceil(len(x) / recipe.batch_size) * epochs
    rate = (
        keras.optimizers.schedules.CosineDecay(recipe.lr, steps)
        if recipe.schedule == "cosine"
        else recipe.lr
    )
    net.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    net.fit(
        x,
        y,
        batch_size=recipe.batch_size,
        epochs=epochs,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[Timer()],
    )
    return time.perf_counter() - t0, times


def imgkit_train(data: Path, out: Path, model: str, epochs: int) -> tuple[float, list[float]]:
    from imgkit.train.trainer import train

    times: list[float] = []
    t0 = time.perf_counter()
    train(
        data,
        out,
        model=model,
        epochs=epochs,
        patience=0,
        augment="none",  # the same work as the bare baseline, which has no flip layer
        on_epoch=lambda row: times.append(time.perf_counter()),  # after the checkpoint
    )
    return time.perf_counter() - t0, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=12000, help="training images")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="fashion-cnn")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = make_dataset(tmp, args.limit)
        data = tmp / "data"
        # Warm the cache and TensorFlow once so neither side pays for them alone.
        bare_fit(data, args.model, 1)
        bare_total, bare_epochs = bare_fit(data, args.model, args.epochs)
        ours_total, ours_epochs = imgkit_train(data, tmp / "run", args.model, args.epochs)

    # From end-of-epoch timestamps: epoch 1 (tracing) drops out; steady state is epochs 2+.
    bare_ep = statistics.median(np.diff(bare_epochs))
    ours_ep = statistics.median(np.diff(ours_epochs))
    overhead = 100 * (ours_ep / bare_ep - 1)
    print(f"{args.model}, {source}, {args.limit} training images, {args.epochs} epochs")
    print_table(
        [
            ("bare model.fit (baseline)", f"{bare_ep:.2f} s", f"{bare_total:.1f} s", "1.00x"),
            (
                "imgkit train",
                f"{ours_ep:.2f} s",
                f"{ours_total:.1f} s",
                f"{ours_ep / bare_ep:.2f}x",
            ),
        ],
        ("run", "epoch (median, 2+)", "whole run", "epoch vs baseline"),
    )
    print(f"overhead per epoch: {overhead:+.1f}% (bar: at most +{BAR_PERCENT:g}%)")
    if overhead > BAR_PERCENT:
        raise SystemExit(f"missed the bar: {overhead:+.1f}% > +{BAR_PERCENT:g}%")


if __name__ == "__main__":
    main()
