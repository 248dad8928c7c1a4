"""Duplicates, near duplicates and leaks: candidate pairs, confirmed, then clustered.

Exact copies share the SHA-256 of their decoded pixels. Near copies are found in two
steps: candidates (pairs whose perceptual hashes are close, and nearest neighbours in
embedding space above a cosine), then a geometric check of each candidate
(:mod:`imgkit.evaluate.audit.confirm`). A confirmed pair whose images sit in
different splits (or one in the data set and one in ``--against``) is a leak.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from imgkit.evaluate.audit import confirm, neighbours
from imgkit.evaluate.audit.scan import Scan
from imgkit.evaluate.audit.thresholds import Thresholds

CONFIRM_BATCH = 4096


@dataclass(frozen=True)
class Pair:
    """Two images found to be copies: ``exact`` (same pixels) or not; ``score`` 0-1."""

    i: int
    j: int
    exact: bool
    score: float
    method: str


def exact_pairs(scan: Scan) -> list[Pair]:
    """Each image with the same decoded pixels as an earlier one, paired with the first."""
    first: dict[bytes, int] = {}
    out = []
    for i in np.flatnonzero(scan.ok):
        key = scan.sha[i].tobytes()
        if key in first:
            out.append(Pair(first[key], int(i), True, 1.0, "pixels"))
        else:
            first[key] = int(i)
    return out


def candidates(
    scan: Scan, nbr: tuple[np.ndarray, np.ndarray] | None, t: Thresholds
) -> dict[tuple[int, int], float]:
    """Candidate pairs (i < j) with their embedding cosine (-1 when unknown).

    Each image brings at most ``hash_candidates`` hash pairs and ``neighbours``
    embedding pairs, so there are at most (hash_candidates + neighbours) x n
    candidates however dense the data set is in look-alikes: the check after costs
    the same per image at any size.
    """
    found = neighbours.hash_pairs(scan.phash, scan.ok, t.candidate_hamming, t.hash_candidates)
    pairs = dict.fromkeys(found, -1.0)
    if nbr is not None:
        for key, cos in neighbours.embedding_pairs(*nbr, t.candidate_cosine).items():
            pairs[key] = cos
    # Exact copies are already known; checking them again would only cost time.
    return {
        (i, j): c for (i, j), c in pairs.items() if scan.sha[i].tobytes() != scan.sha[j].tobytes()
    }


def confirm_pairs(
    scan: Scan,
    cands: dict[tuple[int, int], float],
    paths: Sequence[str | os.PathLike],
    t: Thresholds,
    workers: int | None = None,
) -> list[Pair]:
    """The candidates that align as copies do (see :mod:`imgkit.evaluate.audit.confirm`)."""

    def check(item):
        (i, j), cos = item
        m = confirm.match_thumbs(scan.thumbs[i], scan.thumbs[j])
        if m.mismatch > t.max_mismatch and not m.aligned and cos >= t.orb_cosine:
            try:
                m = confirm.match_files(paths[i], paths[j])
            except Exception:  # a file gone or unreadable since the scan: not a match
                m = confirm.NO_MATCH
        ok = m.aligned and m.mismatch <= t.max_mismatch and m.overlap >= t.min_overlap
        return Pair(i, j, False, round(1.0 - m.mismatch, 4), m.method) if ok else None

    items = sorted(cands.items())
    out: list[Pair] = []
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 2)) as pool:
        # In batches: map() makes a future per item up front (millions at 277k images).
        for s in range(0, len(items), CONFIRM_BATCH):
            out += [p for p in pool.map(check, items[s : s + CONFIRM_BATCH]) if p is not None]
    return out


def clusters(n: int, pairs: Sequence[Pair]) -> np.ndarray:
    """A cluster id per image (union-find over the pairs); singletons keep their index."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        a, b = root(p.i), root(p.j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(n)], np.int64)


def pair_rows(pairs: Sequence[Pair], names: Sequence[str], splits: Sequence[str]) -> list[dict]:
    """issues.csv rows: ``duplicate`` / ``near_duplicate``, or ``leak`` across splits."""
    rows = []
    for p in pairs:
        leak = splits[p.i] != splits[p.j]
        kind = "leak" if leak else ("duplicate" if p.exact else "near_duplicate")
        rows.append(
            {
                "path": names[p.i],
                "issue": kind,
                "score": p.score,
                "other": names[p.j],
                "split": splits[p.i],
                "other_split": splits[p.j],
            }
        )
    return rows


def exact_groups(pairs: Sequence[Pair]) -> dict[int, list[int]]:
    """First image -> its exact copies."""
    out: dict[int, list[int]] = defaultdict(list)
    for p in pairs:
        if p.exact:
            out[p.i].append(p.j)
    return dict(out)
