"""Benchmark: each step of ``imgkit audit`` costs the same per image at 3,200 and 32,000 images.

The sets are real images: Fashion-MNIST items (train, then test, then repeated),
upscaled to 112x112 as in ``bench_audit.py``'s quality set, in class folders, made
into a dataset with ``prep``. Fashion-MNIST is dense with look-alikes (sneakers of one
shape, plain T-shirts), so most images have close neighbours and hash twins: the
worst case for the steps that find and check candidate pairs.

Per size it times, in a fresh process (peak memory measured there):

- ``embed``: MobileNetV2 on a sample of ``--embed-sample`` images (the network alone,
  after a warm-up batch). Its cost per image does not depend on the set's size, and
  embedding 32,000 images takes ~7 minutes on a quiet 2-core machine, so the full set's
  embeddings are computed once (untimed) into the dataset's cache, where the audit
  reads them, as a second audit would;
- then the whole audit at full size with those cached embeddings, step by step as
  summary.json records them: ``setup`` (read the manifest and the predictions, load
  the network: a constant), ``scan`` (decode every image: pixel hash, perceptual
  hash, statistics, thumbnail), ``search`` (neighbour search, hash buckets, candidate
  pairs), ``confirm`` (ECC / ORB alignment and the pixel check of every candidate),
  ``outliers`` (statistics, distances within each class and to the data set),
  ``labels`` (confident learning on seeded random predictions: the step's cost does
  not depend on their quality; and imbalance), ``write`` (issues.csv, clusters, the
  contact sheets).

It prints seconds and ms per image per step and size, the ratio of the largest
size's ms per image to the smallest's (a linear step stays near 1; an all-pairs step
would show ~10x for a 10x larger set), a projection to 277,000 images at the largest
size's rate, candidate pairs per image and peak memory (resident set, and anonymous
memory: the resident set also counts the memory-mapped cache's file pages).

Usage: python benchmarks/bench_audit_scale.py [--sizes 3200,32000] [--workdir DIR]
    [--embed-sample 1000]
(--sizes 500 is a quick smoke run; --workdir keeps the sets and their embeddings for
the next run.) Exit status: 1 when the whole audit's cost per image grows more than
1.5x from the smallest size to the largest.
Needs the audit extra, Debian's dataset-fashion-mnist and ../shared/weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _table import PEAK_SAMPLER, print_table
from audit_set import scale_set
from bench_audit import _weights

BAR = 1.5
PROJECT = 277_000
STEPS = ("setup", "embed", "scan", "search", "confirm", "outliers", "labels", "write")

# The audit in a child process; prints its peak memory (KiB) last: the peak resident
# set and the peak anonymous memory, sampled every 50 ms from /proc.
CHILD = (
    PEAK_SAMPLER
    + """from imgkit.evaluate.audit import run_audit
data, out, weights, preds = sys.argv[1:5]
run_audit(data, out, weights=weights, predictions=preds)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, peak[0], file=sys.stderr)
"""
)

# The embedding network alone on a sample of the set, after one warm-up batch.
EMBED = """
import sys, time
import numpy as np
from imgkit.data.dataset import Dataset
from imgkit.evaluate.audit.embed import mobilenet_embedder
from imgkit.evaluate.audit.scan import scan_images
data, weights, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = Dataset.load(data)
paths = [ds.abspath(p) for p in ds.manifest["path"]]
paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[:n]]
emb = mobilenet_embedder(weights)
chunks = [px for scan, _, px in scan_images(paths, emb.spec) if scan is None]
emb(chunks[0][:64])
t0 = time.perf_counter()
for px in chunks:
    emb(px)
print("EMBED_S", time.perf_counter() - t0, sum(len(px) for px in chunks))
"""


def dataset(work: Path, n: int) -> Path:
    """The prepared set of ``n`` images, with its embeddings cached (made once)."""
    from imgkit.data.dataset import CACHE_DIR, Dataset
    from imgkit.data.prep import prepare
    from imgkit.data.prep_options import PrepOptions
    from imgkit.evaluate.audit.inputs import data_images
    from imgkit.evaluate.audit.run import _scan, make_embedder

    data = work / f"data{n}"
    if not (data / "manifest.csv").is_file():
        src = scale_set(work / f"set{n}", n, side=112)
        prepare([str(src)], data, PrepOptions(seed=0))
    ds = Dataset.load(data)
    if not list((data / CACHE_DIR).glob(f"embed-mobilenetv2-*-{ds.hash}.npy")):
        print(f"embedding {n} images once (untimed) into {data / CACHE_DIR}", flush=True)
        embedder = make_embedder("mobilenetv2", _weights())
        _scan(data_images(ds), embedder, lambda m: None, work / "scratch")  # into the cache
    for stale in (data / CACHE_DIR).glob("audit-*"):  # the timed audit scans afresh
        stale.unlink()
    return data


def predictions(data: Path, out: Path) -> Path:
    """predict's CSV for every image: seeded random probabilities over the classes."""
    m = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    classes = sorted(set(m["label"]))
    proba = np.random.default_rng(0).dirichlet(np.ones(len(classes)), len(m))
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "confidence", proba.max(axis=1))
    df.insert(0, "label", np.array(classes)[proba.argmax(axis=1)])
    df.insert(0, "path", m["path"])
    df.to_csv(out, index=False)
    return out


def _python(code: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"the audit failed:\n{done.stderr[-3000:]}")
    return done


def measure(work: Path, n: int, sample: int) -> dict:
    """Seconds per step, candidate pairs and peak memory of one audit of ``n`` images."""
    data = dataset(work, n)
    got = _python(EMBED, data, _weights(), min(n, sample)).stdout.split()
    embed_s, embedded = float(got[-2]), int(got[-1])
    out = work / f"audit{n}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = _python(CHILD, data, out, _weights(), predictions(data, work / f"preds{n}.csv"))
    wall = time.perf_counter() - t0
    rss, anon = (int(v) for v in done.stderr.split("PEAK_KB")[-1].split()[:2])
    summary = json.loads((out / "summary.json").read_text())
    seconds = dict(summary["seconds"])
    seconds["embed"] = embed_s * n / embedded  # the full set at the sample's rate
    return {
        "n": n,
        "seconds": seconds,
        "wall": wall,
        "candidates": summary["candidate_pairs"],
        "rss_mb": rss / 1024,
        "anon_mb": anon / 1024,
        "embed_sample": embedded,
    }


def _per_image(r: dict, step: str) -> float:
    """ms per image of ``step``; ``total`` is every step's but the (constant) setup's."""
    if step == "total":
        return 1000 * sum(r["seconds"].get(s, 0.0) for s in STEPS[1:]) / r["n"]
    return 1000 * r["seconds"].get(step, 0.0) / r["n"]


def report(results: list[dict]) -> bool:
    """Print the tables; True when the whole audit stays within the bar."""
    first, last = results[0], results[-1]
    rows = []
    for step in (*STEPS, "total"):
        per = [_per_image(r, step) for r in results]
        ratio = f"{per[-1] / per[0]:.2f}" if per[0] > 0 and len(results) > 1 else "-"
        # The setup (the network's loading) does not grow with the set.
        proj = last["seconds"]["setup"] if step == "setup" else PROJECT * per[-1] / 1000
        if step == "total":
            proj += last["seconds"]["setup"]
        cells = [f"{p * r['n'] / 1000:.1f} s / {p:.2f}" for p, r in zip(per, results, strict=True)]
        rows.append((step, *cells, ratio, f"{proj / 60:.1f}"))
    heads = tuple(f"{r['n']:,} images: s / ms per image" for r in results)
    print()
    print_table(rows, ("step", *heads, "ratio", f"{PROJECT:,} projected, min"))
    print()
    print_table(
        [
            (f"{r['n']:,}", f"{r['candidates']:,}", f"{r['candidates'] / r['n']:.2f}",
             f"{1000 * r['seconds']['confirm'] / max(r['candidates'], 1):.1f}",
             f"{r['rss_mb']:.0f}", f"{r['anon_mb']:.0f}", f"{r['wall']:.0f}", r["embed_sample"])
            for r in results
        ],
        ("images", "candidate pairs", "per image", "ms per pair", "peak RSS MB",
         "peak anon MB", "audit wall s", "embed sample"),
    )  # fmt: skip
    ratio = _per_image(last, "total") / _per_image(first, "total")
    print(
        f"\nwhole audit but the setup, per image, {last['n']:,} against {first['n']:,}: "
        f"{ratio:.2f}x"
    )
    return ratio <= BAR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3200,32000")
    parser.add_argument("--workdir", default=None, help="keep the sets and embeddings here")
    parser.add_argument("--embed-sample", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-audit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for n in (int(s) for s in args.sizes.split(",") if s):
            results.append(measure(work, n, args.embed_sample))
            print(json.dumps(results[-1]), flush=True)
        ok = report(results)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
