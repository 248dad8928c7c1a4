"""Benchmark: mobilenetv2 training and inference on the accelerator, against bare Keras.

On whatever device the Keras backend has (a GPU when there is one; TensorFlow or
``KERAS_BACKEND=jax``), on the same arrays in the same run:

(a) the data pipeline alone: images/s of imgkit's training batches (its resumable
    shuffle over the dataset's decoded cache), which must outrun training, or the
    device would wait on it;
(b) training images/s, ``imgkit train`` (whole backbone trainable, no augmentation,
    epochs 2+) against a bare ``model.fit`` of the same model on in-memory arrays,
    mixed precision off and on; the bare run also with XLA off and on (imgkit compiles
    with Keras's default, ``jit_compile="auto"``);
(c) inference images/s, imgkit's batched prediction against ``model.predict``.

The bars: imgkit trains at no less than 0.9x bare Keras at the same precision, and
the pipeline alone runs at least 3x faster than training; they are checked on a GPU.
Without one it measures nothing, says "skipped" and exits 4 (neither a pass, 0, nor a
miss, 1); ``--cpu`` runs it small there (96 px, 256 images) to check the code path,
and still exits 4, as its figures are not a GPU's.

Usage: python benchmarks/bench_gpu.py [--images 2048] [--size 224] [--epochs 3] [--cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

TRAIN_BAR = 0.9  # imgkit's training images/s over bare Keras's, at the same precision
PIPELINE_BAR = 3.0  # the pipeline alone over training
SKIPPED = 4  # exit status without a GPU: the bars were not checked


def make_dataset(folder: Path, n: int, size: int):
    """A two-class dataset folder whose decode cache holds ``n`` RGB images."""
    from imgkit.data.dataset import Dataset
    from imgkit.data.dataset_write import write_dataset
    from imgkit.data.records import Record

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    # Class 1 is brighter: a learnable task, so losses are finite and meaningful.
    x = rng.integers(0, 200, (n, size, size, 3), dtype=np.uint8) + (y * 55)[:, None, None, None]
    x = x.astype(np.uint8)
    records = [
        Record(path=f"images/{i}.png", label=("dim", "bright")[y[i]], split="train")
        for i in range(n)
    ]
    write_dataset(folder, records, [], task="classification", seed=0)
    ds = Dataset.load(folder)
    ds.store_arrays("train", x)
    return x, y


def pipeline_rate(x, y, batch: int) -> float:
    """Images/s of imgkit's training batches alone (one epoch, nothing trained)."""
    from imgkit.train.epochs import epoch_batches

    batches = epoch_batches(x, y.reshape(-1, 1).astype(np.float32), batch, 0, 0)
    t0 = time.perf_counter()
    for i in range(batches.steps):
        batches[i]
    return len(x) / (time.perf_counter() - t0)


def bare_rates(x, y, size, batch, epochs, mixed: bool, xla: bool) -> tuple[float, float]:
    """(train, predict) images/s of a bare Keras fit/predict of the same model."""
    import keras

    from imgkit.models import create_model

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        net = create_model("mobilenetv2", 2, (size, size), weights="none", fine_tune_last=-1)
        net.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                    jit_compile=xla)  # fmt: skip
        stamps: list[float] = []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda *_: stamps.append(time.perf_counter())
        )
        target = y.reshape(-1, 1).astype(np.float32)
        net.fit(x, target, batch_size=batch, epochs=epochs, verbose=0, callbacks=[timer])
        train = len(x) / statistics.median(np.diff(stamps))
        net.predict(x[:batch], verbose=0)  # traced once outside the timing
        t0 = time.perf_counter()
        net.predict(x, batch_size=batch, verbose=0)
        return train, len(x) / (time.perf_counter() - t0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def imgkit_rates(data: Path, out: Path, size, batch, epochs, mixed: bool) -> tuple[float, float]:
    """(train, predict) images/s of ``imgkit train`` and imgkit's batched prediction."""
    from imgkit.bundle import load_bundle
    from imgkit.data.dataset import Dataset
    from imgkit.train.scoring import predict_batches
    from imgkit.train.trainer import train

    stamps: list[float] = []
    train(
        data, out, model="mobilenetv2", weights="none", fine_tune_last=-1, augment="none",
        head_epochs=0, input_size=(size, size), batch_size=batch, epochs=epochs, patience=0,
        mixed_precision="on" if mixed else "off", calibrate=False, overwrite=True,
        on_epoch=lambda _row: stamps.append(time.perf_counter()),
    )  # fmt: skip
    n = len(Dataset.load(data).manifest)
    rate = n / statistics.median(np.diff(stamps))
    model = load_bundle(out).model
    x = np.asarray(Dataset.load(data).arrays("train", (size, size), 3))
    predict_batches(model, x[:batch], batch)
    t0 = time.perf_counter()
    predict_batches(model, x, batch)
    return rate, len(x) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--cpu", action="store_true", help="without a GPU, run small to check the code path"
    )
    args = parser.parse_args()

    import keras

    from imgkit.train.recipe import gpu_present

    gpu = gpu_present()
    size = args.size or (224 if gpu else 96)
    n = args.images or (2048 if gpu else 256)
    where = f"{keras.config.backend()} backend, " + ("GPU" if gpu else "CPU only")
    if not gpu and not args.cpu:
        print(f"skipped: no GPU ({where}); the bars are a GPU's. --cpu runs it small to "
              f"check the code path. Exit status {SKIPPED}.")  # fmt: skip
        return SKIPPED
    if not gpu:
        print(f"no GPU: a small run ({n} images at {size} px) that checks the code path; "
              "these figures are not a GPU's", file=sys.stderr)  # fmt: skip
    rows, missed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        x, y = make_dataset(data, n, size)
        pipe = pipeline_rate(x, y, args.batch_size)
        rows.append(("data pipeline alone", "", "", f"{pipe:,.0f}", "", ""))
        for mixed in (False, True):
            precision = "mixed" if mixed else "float32"
            bare = {}
            for xla in (False, True):
                bare[xla] = bare_rates(x, y, size, args.batch_size, args.epochs, mixed, xla)
                rows.append(("bare Keras", precision, "on" if xla else "off",
                             f"{bare[xla][0]:,.1f}", f"{bare[xla][1]:,.1f}", ""))  # fmt: skip
            ours = imgkit_rates(data, Path(tmp) / "run", size, args.batch_size, args.epochs, mixed)
            best = max(bare[False][0], bare[True][0])
            ratio = ours[0] / best
            rows.append(("imgkit train / predict", precision, "auto", f"{ours[0]:,.1f}",
                         f"{ours[1]:,.1f}", f"{ratio:.2f}x"))  # fmt: skip
            if ratio < TRAIN_BAR:
                missed.append(f"{precision}: imgkit trains at {ratio:.2f}x bare Keras")
            if pipe < PIPELINE_BAR * ours[0]:
                missed.append(f"{precision}: the pipeline ({pipe:.0f}/s) is under "
                              f"{PIPELINE_BAR:g}x training ({ours[0]:.0f}/s)")  # fmt: skip
    print(f"mobilenetv2 at {size} px, {n} images, batch {args.batch_size}, {where}")
    headers = ("run", "precision", "XLA", "train img/s", "predict img/s", "train vs best bare")
    print_table(rows, headers)
    if not gpu:
        # Tiny CPU runs are dominated by per-epoch overheads: the bars are a GPU's.
        print(f"skipped: the bars (checked on a GPU only; here {len(missed)} would miss). "
              f"Exit status {SKIPPED}.")  # fmt: skip
        return SKIPPED
    for line in missed:
        print("MISSED:", line, file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
