"""Benchmark: ``imgkit predict`` through ONNX Runtime against Keras, whole command.

Each run is the real command in a fresh process (``python -m imgkit predict RUN DATA
--split test -o preds.csv --runtime R``), so the time includes starting Python,
importing Keras and TensorFlow (Keras runs) or ONNX Runtime (ONNX runs), loading the
model and writing the CSV: what a shell script pays. The images come from the test
split of the dataset the bundle was trained on, whose decode cache training filled,
so decoding does not decide the figures.

Two bundles, each trained for one epoch on synthetic data (speed does not depend on
how well a model was trained, nor on its weights): mobilenetv2 at 224x224x3 built with
``--weights none``, and fashion-cnn at 28x28x1; then ``imgkit export -f onnx``.
Keras, measured in the same run, is the baseline. The bar: ONNX Runtime at least 2x
Keras's images/s on mobilenetv2.

Usage: python benchmarks/bench_runtime.py [--mobilenet-images 512]
    [--fashion-images 10000] [--repeat 3]
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
from _table import best_of, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

BAR = 2.0


def mobilenet_bundle(tmp: Path, n_test: int) -> tuple[Path, Path]:
    """A 224x224x3 dataset (cache filled) and a mobilenetv2 bundle trained on it."""
    from imgkit.data.dataset import Dataset
    from imgkit.data.dataset_write import write_dataset
    from imgkit.data.records import Record
    from imgkit.train.trainer import train

    rng = np.random.default_rng(0)
    counts = {"train": 32, "val": 16, "test": n_test}
    records = [
        Record(path=f"images/{split}/{i}.png", label=("a", "b")[i % 2], split=split)
        for split, n in counts.items()
        for i in range(n)
    ]
    write_dataset(tmp / "mdata", records, [], seed=0)
    ds = Dataset.load(tmp / "mdata")
    for split, n in counts.items():
        ds.store_arrays(split, rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8))
    run = tmp / "mrun"
    train(ds.root, run, model="mobilenetv2", weights="none", epochs=1, batch_size=16)
    return run, ds.root


def fashion_bundle(tmp: Path, n_test: int) -> tuple[Path, Path]:
    from synthetic import write_idx

    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.train.trainer import train

    idx = write_idx(tmp / "idx", train=600, test=n_test)
    prepare(["fashion-mnist"], tmp / "fdata", PrepOptions(idx_dir=str(idx)))
    train(tmp / "fdata", tmp / "frun", model="fashion-cnn", epochs=1, batch_size=128)
    return tmp / "frun", tmp / "fdata"


def imgkit(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imgkit", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"imgkit {' '.join(args)} failed:\n{done.stderr}")


def measure(run: Path, data: Path, n: int, repeat: int, out: Path) -> dict[str, float]:
    """Median whole-command seconds per runtime, after one warm-up each."""
    started = time.perf_counter()
    imgkit("export", str(run), "--format", "onnx")
    parity = json.loads((run / "imgkit.json").read_text())["exports"]["onnx"]["parity"]
    print(
        f"{run.name}: exported to ONNX in {time.perf_counter() - started:.1f} s; largest "
        f"difference from Keras {parity['max_abs_diff']:.2g} on {parity['images']} images",
        flush=True,
    )
    seconds = {}
    for runtime in ("keras", "onnx"):
        args = ("predict", str(run), str(data), "--split", "test", "-o", str(out))
        command = (*args, "--runtime", runtime)
        imgkit(*command)  # warm-up: the file cache, the decode cache
        seconds[runtime] = best_of(lambda command=command: imgkit(*command), repeat)
        print(f"{run.name} {runtime}: {n / seconds[runtime]:.0f} images/s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mobilenet-images", type=int, default=512)
    parser.add_argument("--fashion-images", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [
            ("mobilenetv2 224x224x3", mobilenet_bundle(tmp, args.mobilenet_images),
             args.mobilenet_images),
            ("fashion-cnn 28x28x1", fashion_bundle(tmp, args.fashion_images),
             args.fashion_images),
        ]  # fmt: skip
        for name, (run, data), n in cases:
            seconds = measure(run, data, n, args.repeat, tmp / "preds.csv")
            keras_rate = n / seconds["keras"]
            onnx_rate = n / seconds["onnx"]
            ratios[name] = onnx_rate / keras_rate
            rows += [
                (name, "keras (baseline)", n, f"{seconds['keras']:.1f} s",
                 f"{keras_rate:.0f}", "1.0x"),
                (name, "onnx", n, f"{seconds['onnx']:.1f} s", f"{onnx_rate:.0f}",
                 f"{ratios[name]:.2f}x"),
            ]  # fmt: skip
    print("imgkit predict RUN DATA --split test --runtime R (whole command, batch 64)")
    print_table(rows, ("model", "runtime", "images", "time", "images/s", "vs keras"))
    ratio = ratios["mobilenetv2 224x224x3"]
    print(f"bar: onnx at least {BAR:.0f}x keras on mobilenetv2")
    if ratio < BAR:
        raise SystemExit(f"missed the bar: {ratio:.2f}x < {BAR:.0f}x")


if __name__ == "__main__":
    main()
