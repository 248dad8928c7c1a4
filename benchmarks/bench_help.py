"""Benchmark: how fast ``imgkit --help`` starts, against ``python -c "import click"``.

The command group loads subcommands lazily and never imports TensorFlow for help, so
it should cost little more than importing click itself.

Usage: python benchmarks/bench_help.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _table import best_of, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    def run(argv):
        return lambda: subprocess.run(argv, check=True, capture_output=True)

    cases = [
        ("python -c 'import click' (baseline)", [sys.executable, "-c", "import click"]),
        ("imgkit --help", [sys.executable, "-m", "imgkit", "--help"]),
        ("imgkit train --help", [sys.executable, "-m", "imgkit", "train", "--help"]),
        ("imgkit predict --help", [sys.executable, "-m", "imgkit", "predict", "--help"]),
        ("python -c 'import tensorflow' (for scale)", [sys.executable, "-c", "import tensorflow"]),
    ]
    times = [(name, best_of(run(argv), args.repeat)) for name, argv in cases]
    base = times[0][1]
    print_table(
        [(name, f"{t * 1000:.0f} ms", f"{t / base:.2f}x") for name, t in times],
        ("command", "median", "vs baseline"),
    )
    # The bar: help never imports TensorFlow, so each help stays far below its import.
    tf_time = times[-1][1]
    slow = [name for name, t in times[1:-1] if t > tf_time / 2]
    print("bar: every help under half the time of importing TensorFlow")
    if slow:
        raise SystemExit(f"missed the bar: {', '.join(slow)}")


if __name__ == "__main__":
    main()
