"""Candidate pairs: perceptual-hash bands and nearest neighbours in embedding space.

The neighbour search is faiss (``pip install -e ".[audit]"``), not scikit-learn:
scikit-learn has no approximate index, and its exact search costs n^2 dot products
(277,000 images: 7.7e10 pairs). faiss's HNSW graph answers each query in about
log n steps, so the audit stays linear in practice: up to :data:`EXACT_UP_TO`
images the exact flat index is used (fast enough, and exact), above it HNSW on the
vectors reduced to 128 dimensions by PCA, with the candidates then re-scored on the
full vectors. The vectors may be a memory map of the cache file: they are read in
chunks, so a 277,000-image set's 1.4 GB of features are never all in memory at once.
"""

from __future__ import annotations

import numpy as np

from imgkit.infer.runtime import MissingExtraError

EXTRA_HINT = 'pip install -e ".[audit]" (or pip install "imgkit[audit]")'
EXACT_UP_TO = 5_000  # exact search costs n dot products per image: flat only while n is small
PCA_DIM = 128
PCA_SAMPLE = 20_000  # vectors the PCA is fitted on (100 MB at 1,280 features)
CHUNK = 1024  # rows re-scored at once: their k neighbours' vectors are 42 MB
MAX_BUCKET = 64  # images of one hash bucket compared in full; beyond, each meets its next 63
PER_IMAGE = 8  # hash candidates kept per image (the closest): see hash_pairs


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


def _rotated(phash: np.ndarray, band: int) -> np.ndarray:
    """The hashes rotated so the 48 bits after ``band`` lead (the order inside a bucket)."""
    shift = np.uint64(16 * (band + 1) % 64)
    if not shift:
        return phash.copy()
    return (phash >> shift) | (phash << (np.uint64(64) - shift))


def _closest(i: np.ndarray, j: np.ndarray, dist: np.ndarray, cap: int) -> np.ndarray:
    """Mask of the pairs kept when each image keeps its ``cap`` closest (either side)."""
    m = len(i)
    owner = np.concatenate([i, j])
    d = np.concatenate([dist, dist])
    order = np.lexsort((np.arange(2 * m), d, owner))  # by owner, then distance
    sorted_owner = owner[order]
    first = np.searchsorted(sorted_owner, sorted_owner, side="left")
    rank = np.empty(2 * m, np.int64)
    rank[order] = np.arange(2 * m) - first
    return (rank[:m] < cap) | (rank[m:] < cap)


def hash_pairs(
    phash: np.ndarray, valid: np.ndarray, max_bits: int, per_image: int = PER_IMAGE
) -> dict[tuple[int, int], int]:
    """Pairs (i < j) whose hashes share a 16-bit band and differ in <= ``max_bits``.

    Two hashes within 3 bits always share a band (pigeonhole); most within 12 do.
    Each image lands in 4 buckets (one per band). Inside a bucket the images are
    sorted by the rest of their hash and each is compared with the next
    :data:`MAX_BUCKET` - 1 only: a small bucket is compared in full, and a large one
    (a look-alike-dense or blank-heavy data set: its buckets grow with the data) costs
    the same per image instead of growing with it, while hashes equal or close in
    their leading bits still meet. Each image then keeps its ``per_image`` closest
    pairs (a pair stays when either image keeps it), so at most ``per_image`` x n
    pairs go on to the (costly) check. Every step is linear in the number of images.

    Returns:
        (i, j) -> the Hamming distance.
    """
    idx = np.flatnonzero(valid)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending, budget = 0, 4 * per_image * len(idx) + 4096
    for band in range(4):
        keys = (phash[idx] >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        order = np.lexsort((_rotated(phash[idx], band), keys))
        members, k = idx[order], keys[order]
        for step in range(1, MAX_BUCKET):
            if step >= len(members):
                break
            same = np.flatnonzero(k[:-step] == k[step:])
            if not len(same):
                break  # no bucket holds more than ``step`` images
            a, b = members[same], members[same + step]
            d = hamming(phash[a], phash[b])
            close = d <= max_bits
            parts.append((np.minimum(a, b)[close], np.maximum(a, b)[close], d[close]))
            pending += int(close.sum())
            if pending > budget:  # memory stays ~per_image x n pairs, not 252 x n
                parts = [_keep_closest(parts, len(phash), per_image)]
                pending = len(parts[0][0])
    if not parts:
        return {}
    i, j, d = _keep_closest(parts, len(phash), per_image)
    return dict(zip(zip(i.tolist(), j.tolist(), strict=True), d.tolist(), strict=True))


def _keep_closest(parts, n: int, per_image: int):
    """The pairs of ``parts`` (one row each) that one of their images keeps."""
    i, j, d = (np.concatenate(x) for x in zip(*parts, strict=True))
    # One row per pair (a pair can share several bands).
    _, first = np.unique(i.astype(np.int64) * (n + 1) + j, return_index=True)
    i, j, d = i[first], j[first], d[first]
    keep = _closest(i, j, d, per_image)
    return i[keep], j[keep], d[keep]


def _reduced(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """PCA to :data:`PCA_DIM` dimensions, unit length, read from ``vectors`` in chunks."""
    faiss = require("faiss")
    d = vectors.shape[1]
    pca = faiss.PCAMatrix(d, min(PCA_DIM, d))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.permutation(rows)[:PCA_SAMPLE])
    pca.train(np.ascontiguousarray(vectors[sample], np.float32))
    out = np.empty((len(rows), min(PCA_DIM, d)), np.float32)
    for s in range(0, len(rows), CHUNK):
        part = np.ascontiguousarray(vectors[rows[s : s + CHUNK]], np.float32)
        out[s : s + CHUNK] = pca.apply(part)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def _search(vectors: np.ndarray, rows: np.ndarray, kk: int) -> np.ndarray:
    """Positions (into ``rows``) of each row's ``kk`` nearest rows, itself included."""
    faiss = require("faiss")
    if len(rows) <= EXACT_UP_TO:
        sub = np.ascontiguousarray(vectors[rows], np.float32)
        index = faiss.IndexFlatIP(sub.shape[1])
        index.add(sub)
        return index.search(sub, kk)[1]
    # PCA keeps the neighbourhoods of copies; HNSW finds them in ~log n steps, so the
    # cost per image stays flat (an exact search costs n dot products per image).
    reduced = _reduced(vectors, rows)
    index = faiss.IndexHNSWFlat(reduced.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.hnsw.efSearch = 64
    index.add(reduced)
    return index.search(reduced, kk)[1]


def neighbours_of(vectors: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``rows``' ``k`` nearest other ``rows`` by cosine (``vectors`` unit length).

    ``vectors`` may be a memory map: it is read in chunks, never copied whole above
    :data:`EXACT_UP_TO` rows.

    Returns:
        (indices into ``vectors`` (len(rows), k), similarities (len(rows), k)) on the
        full vectors, most similar first; missing neighbours hold -1 and -inf.
    """
    m = len(rows)
    out_i = np.full((m, k), -1, np.int64)
    out_s = np.full((m, k), -np.inf, np.float32)
    if m < 2:
        return out_i, out_s
    found = _search(vectors, rows, min(k + 1, m))
    for s in range(0, m, CHUNK):
        hits = found[s : s + CHUNK]
        own = np.arange(s, s + len(hits))[:, None]
        hits = np.where(hits == own, -1, hits)
        # Itself out, the others moved left, the row cut to k.
        shift = np.argsort(hits < 0, axis=1, kind="stable")
        hits = np.take_along_axis(hits, shift, axis=1)[:, :k]
        ok = hits >= 0
        mine = np.asarray(vectors[rows[s : s + len(hits)]], np.float32)
        theirs = np.asarray(vectors[rows[np.where(ok, hits, 0)].ravel()], np.float32)
        sims = np.einsum("nkd,nd->nk", theirs.reshape(len(hits), hits.shape[1], -1), mine)
        sims = np.where(ok, sims, -np.inf).astype(np.float32)  # re-scored on the full vectors
        order = np.argsort(-sims, axis=1, kind="stable")
        w = hits.shape[1]
        out_i[s : s + len(hits), :w] = np.where(ok, rows[np.where(ok, hits, 0)], -1)[
            np.arange(len(hits))[:, None], order
        ]
        out_s[s : s + len(hits), :w] = np.take_along_axis(sims, order, axis=1)
    return out_i, out_s


def neighbours(vectors: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each valid vector's ``k`` nearest other valid vectors, by cosine similarity.

    Returns:
        (indices (n, k), similarities (n, k)) on the full vectors; rows of invalid
        images and missing neighbours hold -1 and -inf.
    """
    n = len(vectors)
    out_i = np.full((n, k), -1, np.int64)
    out_s = np.full((n, k), -np.inf, np.float32)
    rows = np.flatnonzero(valid)
    out_i[rows], out_s[rows] = neighbours_of(vectors, rows, k)
    return out_i, out_s


def embedding_pairs(
    nbr_i: np.ndarray, nbr_s: np.ndarray, min_cosine: float
) -> dict[tuple[int, int], float]:
    """Pairs (i < j) of neighbours with cosine >= ``min_cosine``, with that cosine.

    At most k x n pairs (each image names its k neighbours).
    """
    out: dict[tuple[int, int], float] = {}
    rows, cols = np.nonzero(nbr_s >= min_cosine)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        j = int(nbr_i[r, c])
        key = (r, j) if r < j else (j, r)
        out[key] = max(out.get(key, -1.0), float(nbr_s[r, c]))
    return out
