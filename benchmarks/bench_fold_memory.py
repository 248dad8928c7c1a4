"""Benchmark: a cross-validation fold's memory does not grow with the dataset.

Makes folded datasets of N and 10N synthetic 64x64 RGB images (their decode cache
written directly: no image files are decoded, memory is what is measured), then in a
fresh process per size sets up fold 1 as ``train --fold 1`` does (the fold's train and
val images and labels) and reads one epoch of training batches in the loop's order.
Reported, above the process's start-up: the peak resident memory (VmHWM) of the
setup, and the largest anonymous memory (RssAnon: what the process itself allocated)
seen during the setup and the epoch. Not the epoch's resident memory: the pages of
the memory-mapped cache that its batches touch count in it, but they are the page
cache's (shared, dropped under pressure), and the kernel's read-ahead maps far more
than the rows read. A fold that copies its images grows both ~10x with the data; one
that reads its rows from the cache keeps them flat.

Usage: python benchmarks/bench_fold_memory.py [--sizes 2000 20000] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _table import print_table

SIZE = (64, 64)
CHILD = """
import json, sys
import numpy as np

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MB
    raise KeyError(key)

from imgkit.data.dataset import Dataset
from imgkit.data.folds import fold_view
from imgkit.train.epochs import batch_bounds, epoch_order

ds = Dataset.load(sys.argv[1])
start_hwm, start_anon = status("VmHWM"), status("RssAnon")
view = fold_view(ds, 1)
x = view.arrays("train", (64, 64), 3)
val = view.arrays("val", (64, 64), 3)
y, y_val = view.labels("train"), view.labels("val")
setup_hwm = status("VmHWM") - start_hwm
peak_anon = status("RssAnon") - start_anon
order = epoch_order(0, 0, len(x))
bounds = batch_bounds(len(x), 32)
checksum = 0
for start, end in bounds:
    batch = np.asarray(x[np.sort(order[start:end])])
    checksum += int(batch[:, 0, 0, 0].sum())
    peak_anon = max(peak_anon, status("RssAnon") - start_anon)
for start in range(0, len(val), 32):
    checksum += int(np.asarray(val[start : start + 32])[:, 0, 0, 0].sum())
    peak_anon = max(peak_anon, status("RssAnon") - start_anon)
print(json.dumps({"setup_mb": setup_hwm, "anon_mb": peak_anon, "train": len(x),
                  "val": len(val), "checksum": checksum}))
"""


def make_dataset(folder: Path, n: int, folds: int) -> None:
    """A folded dataset of ``n`` images whose train-split cache is filled in chunks."""
    from imgkit.data.dataset import Dataset
    from imgkit.data.dataset_write import write_dataset
    from imgkit.data.folds import assign_folds
    from imgkit.data.records import Record

    labels = ["a" if i % 2 else "b" for i in range(n)]
    fold_of = assign_folds(labels, folds, seed=0)
    records = [
        Record(path=f"images/{i}.png", label=label, split="train", fold=fold)
        for i, (label, fold) in enumerate(zip(labels, fold_of, strict=True))
    ]
    write_dataset(folder, records, [])
    ds = Dataset.load(folder)
    path = ds.cache_file("train", SIZE, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *SIZE, 3))
    rng = np.random.default_rng(0)
    for start in range(0, n, 1000):
        end = min(start + 1000, n)
        out[start:end] = rng.integers(0, 256, (end - start, *SIZE, 3), dtype=np.uint8)
    out.flush()
    del out


def measure(folder: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            folder = Path(tmp) / f"folded-{n}"
            make_dataset(folder, n, args.folds)
            got = measure(folder)
            data_mb = n * SIZE[0] * SIZE[1] * 3 / 2**20
            first = first or got
            rows.append(
                (
                    n,
                    f"{got['train']} / {got['val']}",
                    f"{data_mb:.0f} MB",
                    f"{got['setup_mb']:.1f} MB",
                    f"{got['setup_mb'] / max(first['setup_mb'], 0.1):.1f}x",
                    f"{got['anon_mb']:.1f} MB",
                    f"{got['anon_mb'] / max(first['anon_mb'], 0.1):.1f}x",
                )
            )
    print(f"fold 1 of {args.folds}: setup, then one epoch of 32-image batches (64x64x3 uint8)")
    headers = ("images", "train / val", "cache", "setup peak RSS", "ratio",
               "peak anon memory", "ratio")  # fmt: skip
    print_table(rows, headers)
    print("memory above the process's start-up; ratio: against the smallest size")


if __name__ == "__main__":
    main()
