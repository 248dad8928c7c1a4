"""Benchmark: a frozen VGG16's head epoch on cached features against the same epoch
through the backbone (the histopathology recipe, seed 003; bar: at least 10x faster).

Both runs train ``vgg16`` at 50x50 (IDC patch size) with the backbone frozen and no
augmentation; one computes the backbone's features once and trains the head on them
(the default for vgg16), the other runs every batch through the backbone. Weights are
random (no ImageNet VGG16 file exists offline; the timings do not depend on them).

Usage: python benchmarks/bench_vgg16_head.py [--train 960] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _table import print_table
from bench_transfer import make_dataset, steady


def run(data: Path, out: Path, epochs: int, cache: bool) -> tuple[list[float], float]:
    from imgkit.train.trainer import train

    times: list[float] = []
    t0 = time.perf_counter()
    train(
        data, out, model="vgg16", input_size=(50, 50), epochs=epochs, weights="none",
        fine_tune_last=0, augment="none", patience=0, cache_features=cache,
        on_epoch=lambda row: times.append(row["seconds"]),
    )  # fmt: skip
    return times, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=960)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = make_dataset(tmp / "data", args.train, args.val, 50)
        through, through_total = run(tmp / "data", tmp / "a", args.epochs, cache=False)
        cached, cached_total = run(tmp / "data", tmp / "b", args.epochs, cache=True)
    t_ep, c_ep = steady(through), steady(cached)
    print(f"vgg16 at 50x50, frozen, {source}, {args.train} train images, {args.epochs} epochs")
    print_table(
        [
            ("epoch (median, 2+)", f"{t_ep:.3f} s", f"{c_ep:.3f} s", f"{t_ep / c_ep:.1f}x faster"),
            (
                "whole run",
                f"{through_total:.1f} s",
                f"{cached_total:.1f} s",
                f"{through_total / cached_total:.2f}x faster",
            ),
        ],  # fmt: skip
        ("", "through the backbone (baseline)", "head on cached features", "ratio"),
    )
    print("bar: head epoch at least 10x faster")
    if t_ep / c_ep < 10:
        raise SystemExit(f"missed the bar: {t_ep / c_ep:.1f}x < 10x")


if __name__ == "__main__":
    main()
