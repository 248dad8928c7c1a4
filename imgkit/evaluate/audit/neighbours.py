"""Candidate pairs: perceptual-hash bands and nearest neighbours in embedding space.

The neighbour search is faiss (``pip install -e ".[audit]"``), not scikit-learn:
scikit-learn has no approximate index, and its exact search costs n^2 dot products
(277,000 images: 7.7e10 pairs). faiss's HNSW graph answers each query in about
log n steps, so the audit stays linear in practice: up to :data:`EXACT_UP_TO`
images the exact flat index is used (fast enough, and exact), above it HNSW on the
vectors reduced to 128 dimensions by PCA, with the candidates then re-scored on the
full vectors.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from imgkit.infer.runtime import MissingExtraError

EXTRA_HINT = 'pip install -e ".[audit]" (or pip install "imgkit[audit]")'
EXACT_UP_TO = 20_000
PCA_DIM = 128
MAX_BUCKET = 64  # a hash band shared by more images than this holds blank ones, not copies


def require(module: str):
    """Import one of the audit extra's modules, or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = {"faiss": "faiss-cpu", "cv2": "opencv-python-headless"}.get(module, module)
        raise MissingExtraError(f"the audit needs {what} (the audit extra): {EXTRA_HINT}") from e


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between 64-bit hashes ``a`` and ``b`` (element-wise)."""
    x = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def hash_pairs(phash: np.ndarray, valid: np.ndarray, max_bits: int) -> set[tuple[int, int]]:
    """Pairs (i < j) whose hashes share a 16-bit band exactly and differ in <= ``max_bits``.

    Two hashes within 3 bits always share a band (pigeonhole); most within 12 do.
    Each image lands in 4 buckets, so the cost is linear in the number of images.
    """
    out: set[tuple[int, int]] = set()
    idx = np.flatnonzero(valid)
    for band in range(4):
        keys = (phash[idx] >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, k in zip(idx, keys, strict=True):
            buckets[int(k)].append(int(i))
        for members in buckets.values():
            if len(members) < 2 or len(members) > MAX_BUCKET:
                continue
            m = np.array(members)
            a, b = np.triu_indices(len(m), 1)
            close = hamming(phash[m[a]], phash[m[b]]) <= max_bits
            out.update(zip(m[a][close].tolist(), m[b][close].tolist(), strict=True))
    return out


def _index(vectors: np.ndarray):
    faiss = require("faiss")
    n, d = vectors.shape
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(d)
        index.add(vectors)
        return index, vectors
    # PCA keeps the neighbourhoods of copies; HNSW finds them in ~log n steps.
    pca = faiss.PCAMatrix(d, min(PCA_DIM, d))
    sample = vectors[np.random.default_rng(0).permutation(n)[:50_000]]
    pca.train(sample)
    reduced = pca.apply(vectors)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexHNSWFlat(reduced.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.hnsw.efSearch = 64
    index.add(reduced)
    return index, reduced


def neighbours(vectors: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each valid vector's ``k`` nearest other valid vectors, by cosine similarity.

    Returns:
        (indices (n, k), similarities (n, k)) on the full vectors; rows of invalid
        images and missing neighbours hold -1 and -inf.
    """
    n = len(vectors)
    idx_valid = np.flatnonzero(valid)
    out_i = np.full((n, k), -1, np.int64)
    out_s = np.full((n, k), -np.inf, np.float32)
    if len(idx_valid) < 2:
        return out_i, out_s
    sub = np.ascontiguousarray(vectors[idx_valid], dtype=np.float32)
    index, queries = _index(sub)
    kk = min(k + 1, len(idx_valid))
    _, found = index.search(queries, kk)
    for row, (self_i, hits) in enumerate(zip(idx_valid, found, strict=True)):
        hits = hits[(hits >= 0) & (hits != row)][:k]
        if not len(hits):
            continue
        others = idx_valid[hits]
        sims = sub[hits] @ sub[row]  # re-scored on the full vectors
        order = np.argsort(-sims)
        out_i[self_i, : len(hits)] = others[order]
        out_s[self_i, : len(hits)] = sims[order]
    return out_i, out_s


def embedding_pairs(
    nbr_i: np.ndarray, nbr_s: np.ndarray, min_cosine: float
) -> dict[tuple[int, int], float]:
    """Pairs (i < j) of neighbours with cosine >= ``min_cosine``, with that cosine."""
    out: dict[tuple[int, int], float] = {}
    rows, cols = np.nonzero(nbr_s >= min_cosine)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        j = int(nbr_i[r, c])
        key = (r, j) if r < j else (j, r)
        out[key] = max(out.get(key, -1.0), float(nbr_s[r, c]))
    return out
