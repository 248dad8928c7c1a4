"""Tiny helpers shared by the benchmark scripts: timing and a plain table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Run ``fn`` ``repeat`` times and return the median wall time in seconds.

    The median, not the mean: this machine is shared and noisy, and one slow outlier
    should not decide a ratio.
    """
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    """Print rows as an aligned plain-text table on stdout."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


# Python source that a benchmark's child process runs first: a thread that keeps the
# peak anonymous memory (RssAnon: what the process itself holds, not the page cache's
# memory-mapped pages) seen every 50 ms, in ``peak[0]`` (KiB).
PEAK_SAMPLER = """
import resource, sys, threading, time
peak = [0]
def sample():
    while True:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
"""
