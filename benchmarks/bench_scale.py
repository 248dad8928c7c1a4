"""Benchmark: every step's cost per image stays flat from 1k to 300k images.

Writes IDC-layout folders (``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<N>.png``,
50x50 RGB PNGs, like the real 277,524-patch set) at each size, then runs the commands a
user would, each in a fresh process: ``prep`` (check every image, split by patient),
``train`` one epoch (``small-cnn`` at 50x50x3, which builds the decode cache),
``predict`` over the whole folder, ``eval`` of those predictions against the dataset,
and ``submit`` on a Kaggle-sized 12,500-row predictions CSV. For each step it prints
seconds per 1,000 images and the peak anonymous memory (the resident set would also
count the memory-mapped decode cache's reclaimable file pages), and the ratio of the
largest size's per-image cost to the 10k one's (the bar: at most 1.5x; a quadratic step shows
as ~30x at 300k). The baseline is the 10k run of the same step in the same run.

The PNG files are copies of 2,000 distinct patches (writing 300k fresh PNGs takes
longer than the steps under test, and prep does not compare file contents).

Usage: python benchmarks/bench_scale.py [--sizes 1000 10000 100000 300000] [--keep DIR]
Exit status: 1 when a step's per-image cost grows more than 1.5x from 10k to the largest
size.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import PEAK_SAMPLER, print_table

BAR = 1.5
DISTINCT = 2000
PER_PATIENT = 1000  # the real set has ~1,000 patches per patient

# Runs one imgkit command in this process and prints its peak memory (KiB) last: the
# peak resident set (which counts the memory-mapped decode cache's pages, file-backed
# and reclaimable) and the peak anonymous memory (what the process really holds),
# sampled every 50 ms from /proc.
CHILD = (
    PEAK_SAMPLER
    + """from imgkit.commands import main
rc = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, peak[0], file=sys.stderr)
sys.exit(rc)
"""
)


def patch_bytes(rng: np.random.Generator, label: int) -> bytes:
    from PIL import Image

    base = np.array([(230, 170, 200), (90, 40, 140)][label])
    pixels = np.clip(base + rng.integers(-40, 40, size=(50, 50, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_idc(root: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` patches in the IDC layout, ~30% positive, PER_PATIENT per patient."""
    rng = np.random.default_rng(seed)
    library = [[patch_bytes(rng, label) for _ in range(DISTINCT // 2)] for label in (0, 1)]
    for i in range(n):
        pid = 10000 + i // PER_PATIENT
        # Patients differ in their positive share, so the patient split has work to do.
        label = int(rng.random() < 0.1 + 0.4 * ((pid % 5) / 4))
        folder = root / str(pid) / str(label)
        if i % PER_PATIENT == 0 or not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
        name = f"{pid}_idx5_x{50 * (i % 997)}_y{50 * (i // 997)}_class{label}.png"
        (folder / name).write_bytes(library[label][i % len(library[label])])


def make_submission_preds(path: Path, n: int = 12500) -> None:
    rng = np.random.default_rng(1)
    p = rng.random(n)
    lines = ["path,label,confidence,p_cat,p_dog"]
    for i in range(n):
        label, conf = ("dog", p[i]) if p[i] >= 0.5 else ("cat", 1 - p[i])
        lines.append(f"test1/{i + 1}.jpg,{label},{conf:.6g},{1 - p[i]:.6g},{p[i]:.6g}")
    path.write_text("\n".join(lines) + "\n")


def run_step(args: list[str]) -> tuple[float, float]:
    """Run ``imgkit ARGS`` in a fresh process; return (seconds, peak anonymous MiB)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"imgkit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    peak = [ln for ln in done.stderr.splitlines() if ln.startswith("PEAK_KB")][-1]
    rss_kb, anon_kb = (int(v) for v in peak.split()[1:3])
    # Without /proc (not Linux) the anonymous peak is unknown: report the RSS peak.
    return seconds, (anon_kb or rss_kb) / 1024


def measure(n: int, tmp: Path) -> dict[str, tuple[float, float, int]]:
    """Each step at size n: {step: (seconds, peak MiB, images it handled)}."""
    root, data, run = tmp / f"idc{n}", tmp / f"data{n}", tmp / f"run{n}"
    preds = tmp / f"preds{n}.csv"
    make_idc(root, n)
    out = {"prep": (*run_step(["prep", str(root), "-o", str(data)]), n)}
    out["train 1 epoch"] = (
        *run_step(
            ["train", str(data), "-o", str(run), "--model", "small-cnn", "--size", "50",
             "--channels", "3", "--epochs", "1"]
        ),
        n,
    )  # fmt: skip
    out["predict"] = (*run_step(["predict", str(run), str(root), "-o", str(preds)]), n)
    scores = tmp / f"eval{n}"
    out["eval"] = (*run_step(["eval", str(preds), "--truth", str(data), "-o", str(scores)]), n)
    shutil.rmtree(root)
    shutil.rmtree(data)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 300000])
    parser.add_argument("--keep", help="work in this folder (default: a temporary one)")
    args = parser.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for n in args.sizes:
            results[n] = measure(n, tmp)
            for step, (s, mib, _) in results[n].items():
                print(f"# {n:>7,} {step}: {s:.1f} s, {mib:.0f} MiB", file=sys.stderr, flush=True)
        subs = tmp / "sub_preds.csv"
        make_submission_preds(subs)
        sub_s, sub_mib = run_step(["submit", str(subs), "-o", str(tmp / "submission.csv")])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return report(results, (sub_s, sub_mib), args.sizes)


def report(results: dict, submit: tuple[float, float], sizes: list[int]) -> int:
    base_n = 10000 if 10000 in results else sizes[0]
    top_n = sizes[-1]
    rows, worst = [], 0.0
    for step in results[base_n]:
        base = results[base_n][step][0] / results[base_n][step][2] * 1000
        for n in sizes:
            s, mib, k = results[n][step]
            per_k = s / k * 1000
            rows.append((step, f"{n:,}", f"{s:.1f}", f"{per_k:.2f}", f"{mib:.0f}",
                         f"{per_k / base:.2f}x"))  # fmt: skip
        top = results[top_n][step][0] / results[top_n][step][2] * 1000
        worst = max(worst, top / base)
    rows.append(("submit (12,500 ids)", "12,500", f"{submit[0]:.1f}",
                 f"{submit[0] / 12.5:.2f}", f"{submit[1]:.0f}", ""))  # fmt: skip
    print_table(rows, ("step", "images", "seconds", "s per 1k", "peak anon MiB", f"vs {base_n:,}"))
    print(f"\nworst growth in per-image cost, {base_n:,} -> {top_n:,}: {worst:.2f}x (bar {BAR}x)")
    return 0 if worst <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
