"""Acting on an audit: copies kept in one split (as groups), exact copies dropped.

``imgkit audit DATA --dedupe`` finds clusters of copies; this module writes them into
the dataset's manifest as groups and moves each cluster, whole, into one split, so
no copy of a validation or test image is trained on. ``--dedupe drop`` also removes
the rows of exact copies (same decoded pixels) from the manifest, keeping the first.
Images themselves are never touched: only manifest.csv and dataset.json change, each
written to a temporary name and renamed. The data stage only reads groups (prep,
splits); it does not know how they were found.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from imgkit.data.dataset import INFO, MANIFEST, SPLITS, Dataset
from imgkit.errors import BadDatasetError
from imgkit.fileio import write_csv, write_text

MOVABLE = ("train", "val", "test")  # unlabeled images have no label to leak


def _components(paths: list[str], links: Iterable[list[str]]) -> list[int]:
    """A component id per manifest row, joining rows that share a link list."""
    index = {p: i for i, p in enumerate(paths)}
    parent = list(range(len(paths)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for members in links:
        rows = [index[m] for m in members if m in index]
        for r in rows[1:]:
            a, b = root(rows[0]), root(r)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(paths))]


def _target_split(splits: list[str]) -> str:
    """The split a straddling cluster moves into: where most of it is (ties: train first)."""
    c = Counter(s for s in splits if s in MOVABLE)
    return max(MOVABLE, key=lambda s: (c[s], -MOVABLE.index(s)))


def dedupe_dataset(folder, clusters: list[list[str]], drop: dict[str, list[str]] | None = None):
    """Group ``clusters`` in ``folder``'s manifest, re-split them whole, drop exact copies.

    Args:
        folder: a dataset folder.
        clusters: lists of manifest paths that are copies of one another.
        drop: manifest path -> its exact copies to remove (None: remove nothing).

    Returns:
        What was done (also recorded in dataset.json under ``dedupe``).
    """
    ds = Dataset.load(folder)
    m = ds.manifest.copy()
    known = set(m["path"])
    stray = sorted({p for c in clusters for p in c} - known)
    if stray:
        raise BadDatasetError(f"{ds.root / MANIFEST}: has no row for {stray[0]} (audit again)")
    removed: list[str] = []
    if drop:
        removed = sorted({c for copies in drop.values() for c in copies} & known)
        m = m[~m["path"].isin(removed)].reset_index(drop=True)
    paths = list(m["path"])
    old_groups = m["group"].tolist() if "group" in m.columns else [""] * len(m)
    by_group: dict[str, list[str]] = {}
    for p, g in zip(paths, old_groups, strict=True):
        if g:
            by_group.setdefault(g, []).append(p)
    comp = _components(paths, [*clusters, *by_group.values()])
    sizes = Counter(comp)
    in_cluster = {p for c in clusters for p in c}
    groups, splits, moved = list(old_groups), list(m["split"]), 0
    members: dict[int, list[int]] = {}  # one pass: a scan per cluster would be quadratic
    for i, c in enumerate(comp):
        if sizes[c] > 1:
            members.setdefault(c, []).append(i)
    for root in sorted(members):
        rows = members[root]
        if not any(paths[i] in in_cluster for i in rows):
            continue  # an existing group untouched by any copy
        name = next((old_groups[i] for i in rows if old_groups[i]), f"copies:{paths[rows[0]]}")
        target = _target_split([splits[i] for i in rows])
        for i in rows:
            groups[i] = name
            if splits[i] in MOVABLE and splits[i] != target:
                splits[i], moved = target, moved + 1
    m["split"], m["group"] = splits, groups
    record = {
        "clusters": len(clusters),
        "moved": moved,
        "dropped": removed,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info = dict(ds.info)
    info["counts"] = {
        s: {str(k): int(v) for k, v in sorted(Counter(m.loc[m["split"] == s, "label"]).items())}
        for s in SPLITS
        if (m["split"] == s).any()
    }
    info["images"] = int(len(m))
    info["dedupe"] = record
    write_csv(m, ds.root / MANIFEST)
    write_text(ds.root / INFO, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return record


def straddling(manifest_splits: list[str], manifest_groups: list[str]) -> int:
    """How many groups span more than one of train, val and test (0 after a dedupe)."""
    spans: dict[str, set[str]] = {}
    for s, g in zip(manifest_splits, manifest_groups, strict=True):
        if g and s in MOVABLE:
            spans.setdefault(g, set()).add(s)
    return int(np.sum([len(v) > 1 for v in spans.values()]))
