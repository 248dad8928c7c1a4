"""imgkit audit at scale: work per image capped (counted, not timed); dedupe then folds.

The audit must stay linear in the number of images (benchmarks/bench_audit_scale.py
times it); these tests count what would grow first on a look-alike-dense set: the
hash comparisons and the candidate pairs sent to the (costly) check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cli_helpers import invoke
from conftest import need_module
from test_audit import base_images, make_data

from imgkit.data.dataset import Dataset
from imgkit.evaluate.audit import Thresholds, duplicates, neighbours
from imgkit.evaluate.audit.scan import Scan

need_module("faiss", "needs the audit extra (faiss-cpu)")
need_module("cv2", "needs the audit extra (opencv-python-headless)")


def lookalike_scan(n: int, seed: int = 0) -> Scan:
    """``n`` distinct images whose hashes all lie within a few bits of one another."""
    rng = np.random.default_rng(seed)
    base = np.uint64(rng.integers(0, 2**63))
    flips = rng.integers(0, 64, (n, 3)).astype(np.uint64)
    bits = (np.uint64(1) << flips).astype(np.uint64)
    scan = Scan.empty(n)
    scan.ok[:] = True
    scan.phash[:] = base ^ np.bitwise_or.reduce(bits, axis=1)
    scan.sha[:, :8] = np.arange(n, dtype=np.uint64)[:, None].view(np.uint8)
    return scan


def test_candidates_per_image_stay_capped_on_lookalike_dense_data(monkeypatch):
    compared: list[int] = []
    real = neighbours.hamming
    monkeypatch.setattr(neighbours, "hamming", lambda a, b: compared.append(len(a)) or real(a, b))
    held: list[int] = []  # hash pairs held at once, before each reduction
    keep = neighbours._keep_closest
    monkeypatch.setattr(
        neighbours,
        "_keep_closest",
        lambda parts, *a: held.append(sum(len(p[0]) for p in parts)) or keep(parts, *a),
    )
    t = Thresholds()
    for n in (300, 3000):
        scan = lookalike_scan(n)
        scan.phash[n - 5] = scan.phash[7]  # a twin far away in the order
        # Every image's embedding neighbours: k others, all above the cosine.
        rng = np.random.default_rng(1)
        nbr_i = rng.integers(0, n, (n, t.neighbours))
        nbr_s = np.full((n, t.neighbours), 0.95, np.float32)
        compared.clear()
        held.clear()
        cands = duplicates.candidates(scan, (nbr_i, nbr_s), t)
        # One big bucket per band: all pairs would be n^2 / 2 comparisons.
        assert sum(compared) <= 4 * (neighbours.MAX_BUCKET - 1) * n
        assert max(held) <= 4 * t.hash_candidates * n + 4096 + n  # + one step's pairs
        assert len(cands) <= (t.hash_candidates + t.neighbours) * n
        assert (7, n - 5) in cands  # still found inside the crowd


def test_approximate_search_finds_the_copies_from_a_memory_map(tmp_path, monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 100)  # HNSW on a PCA from 101 images
    rng = np.random.default_rng(0)
    v = rng.normal(size=(800, 160)).astype(np.float32)
    v[700:] = v[:100] + 0.05 * rng.normal(size=(100, 160)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    np.save(tmp_path / "v.npy", v)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    valid = np.ones(800, bool)
    valid[50] = False
    idx, sims = neighbours.neighbours(mapped, valid, 4)
    assert idx.shape == (800, 4) and (idx[50] == -1).all() and valid[idx[valid]].all()
    hit = idx[700:, 0] == np.arange(100)
    assert hit[np.arange(100) != 50].all() and sims[700:, 0][hit].min() > 0.99
    assert (np.diff(sims[valid], axis=1) <= 1e-6).all()  # most similar first


def test_dedupe_then_folds_keeps_every_cluster_in_one_fold(tmp_path):
    imgs = base_images(12)
    for k in range(8):  # exact copies (same pixels, another format), half of them in val
        name = f"{'ab'[k % 2]}{k}"
        img, label, _ = imgs[f"{name}.png"]
        imgs[f"{name}-copy.bmp"] = (img, label, "val" if k < 4 else "train")
    data = make_data(tmp_path / "data", imgs)
    result = invoke("audit", data, "-o", tmp_path / "out", "--features", "none", "--dedupe")
    assert result.exit_code == 0, result.output
    folded = tmp_path / "folded"
    result = invoke("prep", data, "--folds", "4", "-o", folded)
    assert result.exit_code == 0, result.output
    issues = pd.read_csv(tmp_path / "out" / "issues.csv", keep_default_na=False)
    pairs = issues[issues["issue"].isin(["duplicate", "leak"])]
    assert len(pairs) == 8
    ds = Dataset.load(folded)
    fold = {
        str(ds.abspath(p).resolve()): f
        for p, f in zip(ds.manifest["path"], ds.manifest["fold"], strict=True)
    }

    def fold_of(name: str) -> str:
        return fold[str(Path(data, name).resolve())]

    assert all(fold_of(a) for a in pairs["path"])  # they are in the folds, not in test
    for a, b in zip(pairs["path"], pairs["other"], strict=True):
        assert fold_of(a) == fold_of(b), (a, b)
