"""Benchmark: ``imgkit predict`` memory stays flat as the number of images grows.

Predicts folders of 10,000 and 50,000 small PNGs (50x50 RGB, the size of IDC patches)
with a tiny bundle, each in a fresh process, and reports the peak resident memory
(ru_maxrss) and the rate. Streaming means the 50k run should need about what the 10k
run needs; a pipeline that held every image or row would grow ~5x in its data part.

Usage: python benchmarks/bench_predict_memory.py [--sizes 10000 50000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CHILD = """
import resource, sys
from imgkit.commands import main
rc = main(["predict", sys.argv[1], sys.argv[2], "-o", sys.argv[3]])
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak_kb, file=sys.stderr)
sys.exit(rc)
"""


def make_patches(folder: Path, n: int, start: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(start)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, n):
        pixels = rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:06d}.png", compress_level=1)


def make_bundle(tmp: Path) -> Path:
    from synthetic import write_idx

    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.train.trainer import train

    idx = write_idx(tmp / "idx", train=200, test=50)
    prepare(["fashion-mnist"], tmp / "data", PrepOptions(idx_dir=str(idx)))
    train(tmp / "data", tmp / "run", model="small-cnn", epochs=1, batch_size=64)
    return tmp / "run"


def run(bundle: Path, folder: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle), str(folder), str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return time.perf_counter() - t0, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = make_bundle(tmp)
        rows, made = [], 0
        base_peak = None
        for n in sorted(args.sizes):
            folder = tmp / f"patches-{n}"
            # Each size is its own folder; files are made once per size.
            make_patches(folder, n)
            made += n
            seconds, peak = run(bundle, folder, tmp / f"preds-{n}.csv")
            base_peak = base_peak or peak
            rows.append(
                (
                    n,
                    f"{seconds:.1f} s",
                    f"{n / seconds:.0f}",
                    f"{peak:.0f} MB",
                    f"{peak / base_peak:.2f}x",
                )
            )
    print("imgkit predict on folders of 50x50 PNGs (small-cnn bundle), one process each")
    print_table(rows, ("images", "time", "images/s", "peak RSS", "vs smallest"))
    print("bar: flat (the 50k run's peak within 1.25x of the 10k run's)")
    if peak / base_peak > 1.25:
        raise SystemExit(f"missed the bar: peak RSS grew {peak / base_peak:.2f}x")


if __name__ == "__main__":
    main()
