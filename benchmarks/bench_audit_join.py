"""Benchmark: the memory of ``imgkit audit --against``'s join, before and after, at two sizes.

The audit searches a data set and its ``--against`` set as one list of images: the
join puts the second set's scan and embeddings after the first's. Before, it
concatenated them in memory (every thumbnail and vector of both sets held at once:
about 5 GB for 277,000 images and as many against them); now it copies them into
memory-mapped files, a chunk of rows at a time (:mod:`imgkit.evaluate.audit.join`).

Per size N (the data set's images; ``--against`` holds as many) it writes both sets
as the audit's scan leaves them on disk: the scan's per-image arrays (.npz), the
64x64 thumbnails and 1,280-wide embeddings (.npy), random contents (the join copies
bytes, it does not look at them). Then, in a fresh process per run, it loads them as
the audit does (memory maps) and joins them with the code of one tree: this one
("after") and, with ``--before DIR``, a checkout of the code before the change
("before": its ``run._join``; ``mkdir /tmp/before && git archive dc8f80b imgkit | tar
-x -C /tmp/before``). Printed
per run: the join's seconds, the bytes it allocated (tracemalloc's peak), the growth
of the process's anonymous memory (what it holds itself; sampled every 50 ms, and
after the join while its result is alive), its peak resident set (which also counts
the memory-mapped files' pages: the page cache's, given back under pressure), and the
size of the joined arrays; then the ratios between the sizes.

Usage: python benchmarks/bench_audit_join.py [--sizes 3000,30000] [--before DIR]
    [--workdir DIR]
(3,000 and 30,000 are 10x and 100x tests/test_audit_join.py's 300 + 300 images.)
Exit status: 1 when this tree's join allocates more than a twentieth of the joined
arrays at any size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _table import PEAK_SAMPLER, print_table

ROOT = Path(__file__).resolve().parent.parent
DIM = 1280  # MobileNetV2's pooled features
CHUNK = 4096

CHILD = (
    PEAK_SAMPLER
    + """
import json, time, tempfile, tracemalloc
from pathlib import Path
import numpy as np
import imgkit
from imgkit.evaluate.audit.inputs import ImageSet
from imgkit.evaluate.audit.scan import Scan

def anon_kb():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssAnon:"))

work = Path(sys.argv[1])
def load(tag, split):
    scan = Scan.load(work / f"{tag}-scan.npz", work / f"{tag}-thumbs.npy")
    names = [f"{tag}/{k}.png" for k in range(len(scan.ok))]
    images = ImageSet([Path(x) for x in names], names, [split] * len(names), [""] * len(names))
    return images, scan, np.load(work / f"{tag}-vectors.npy", mmap_mode="r")

(a, sa, va), (b, sb, vb) = load("data", "train"), load("against", "against")
try:
    from imgkit.evaluate.audit.join import join
    run = lambda folder: join(a, b, sa, sb, va, vb, folder)
except ImportError:  # the code before the change
    from imgkit.evaluate.audit.run import _join
    run = lambda folder: _join(a, b, sa, sb, va, vb)
with tempfile.TemporaryDirectory(dir=work) as tmp:
    time.sleep(0.2)  # the sampler has seen the loading
    start = anon_kb()
    peak[0] = 0
    tracemalloc.start()
    t0 = time.perf_counter()
    names, paths, splits, scan, vectors = run(Path(tmp))
    seconds = time.perf_counter() - t0
    allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    time.sleep(0.2)
    grown = max(peak[0], anon_kb()) - start
    assert len(scan.thumbs) == len(vectors) == len(names)
    print("RESULT", json.dumps({
        "code": imgkit.__file__, "seconds": seconds, "allocated_mb": allocated / 2**20,
        "anon_mb": grown / 1024,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "joined_mb": (scan.thumbs.nbytes + vectors.nbytes) / 2**20,
    }))
"""
)


def write_set(work: Path, tag: str, n: int, seed: int) -> None:
    """One set as the scan leaves it, written a chunk at a time."""
    from numpy.lib.format import open_memmap

    from imgkit.evaluate.audit.scan import THUMB, Scan

    if (work / f"{tag}-scan.npz").is_file():
        return
    rng = np.random.default_rng(seed)
    thumbs = open_memmap(work / f"{tag}-thumbs.npy", "w+", np.uint8, (n, THUMB, THUMB))
    vectors = open_memmap(work / f"{tag}-vectors.npy", "w+", np.float32, (n, DIM))
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        thumbs[s : s + m] = rng.integers(0, 256, (m, THUMB, THUMB), dtype=np.uint8)
        v = rng.normal(size=(m, DIM)).astype(np.float32)
        vectors[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    thumbs.flush()
    vectors.flush()
    scan = Scan.empty(0)
    scan.ok = np.ones(n, bool)
    scan.reasons = [""] * n
    scan.sha = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    scan.phash = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    scan.stats = rng.random((n, 4), dtype=np.float32)
    scan.save(work / f"{tag}-scan.npz")


def measure(work: Path, tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(work)], capture_output=True, text=True, env=env, cwd=work
    )
    if done.returncode:
        sys.exit(f"the join failed ({tree}):\n{done.stderr[-3000:]}")
    got = json.loads(done.stdout.split("RESULT", 1)[1])
    if not got.pop("code").startswith(str(tree.resolve())):
        sys.exit(f"{tree}: another imgkit was imported (is it a checkout?)")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,30000")
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change")
    parser.add_argument("--workdir", default=None, help="keep the sets here for the next run")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-audit-join-"))
    trees = [("after", ROOT)] + ([("before", args.before)] if args.before else [])
    results = []
    try:
        for n in (int(s) for s in args.sizes.split(",") if s):
            folder = work / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            write_set(folder, "data", n, 0)
            write_set(folder, "against", n, 1)
            for label, tree in trees:
                results.append({"n": 2 * n, "code": label, **measure(folder, tree)})
                print(json.dumps(results[-1]), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    after = [r for r in results if r["code"] == "after"]
    sys.exit(0 if all(r["allocated_mb"] < r["joined_mb"] / 20 for r in after) else 1)


def report(results: list[dict]) -> None:
    print()
    print_table(
        [
            (f"{r['n']:,}", r["code"], f"{r['joined_mb']:.0f}", f"{r['seconds']:.2f}",
             f"{r['allocated_mb']:.1f}", f"{r['anon_mb']:.0f}", f"{r['rss_mb']:.0f}")
            for r in results
        ],
        ("joined images", "code", "joined arrays MB", "join s", "allocated MB",
         "anon growth MB", "peak RSS MB"),
    )  # fmt: skip
    sizes = sorted({r["n"] for r in results})
    if len(sizes) < 2:
        return
    print()
    for code in ("before", "after"):
        ends = [next((r for r in results if r["n"] == n and r["code"] == code), None)
                for n in (sizes[0], sizes[-1])]  # fmt: skip
        if None in ends:
            continue
        small, large = ends
        ratio = {k: large[k] / max(small[k], 1e-9) for k in ("allocated_mb", "anon_mb", "rss_mb")}
        print(
            f"{code}: {large['n']:,} against {small['n']:,} joined images: allocated "
            f"{ratio['allocated_mb']:.1f}x, anonymous memory {ratio['anon_mb']:.1f}x, "
            f"peak RSS {ratio['rss_mb']:.1f}x"
        )


if __name__ == "__main__":
    main()
