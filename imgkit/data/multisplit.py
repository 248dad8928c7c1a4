"""Train/val/test splits for multi-label data: iterative stratification.

A split stratified by one label per image cannot keep the share of every label when
each image carries several. Iterative stratification (Sechidis, Tsoumakas and
Vlahavas, 2011) can: it takes the label with the fewest images still to place, hands
each of those images to the split that most wants that label (ties: the split that
most wants images at all, then chance), and repeats. Rare labels are placed first,
while every split still has room for them, so a label with five images gets its one
val and one test image rather than whatever a random draw leaves. Written here (a few
dozen lines) rather than taken from the ``iterative-stratification`` package, so that
groups (whole units of several images) and fixed splits work as in
:func:`imgkit.data.splits.assign_splits`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from imgkit.data.splits import fixed_splits

_ORDER = ("train", "val", "test")


def _units(n, fixed, groups):
    """Indices to place together: one per free item, or one per group."""
    free = [i for i in range(n) if fixed[i] is None]
    if groups is None:
        return [[i] for i in free]
    members: dict[str, list[int]] = defaultdict(list)
    for i in free:
        members[str(groups[i])].append(i)
    return [members[k] for k in sorted(members)]


def iterative_splits(
    label_sets: Sequence[frozenset[str] | None],
    val: float,
    test: float,
    seed: int,
    groups: Sequence[str | None] | None = None,
    fixed: Sequence[str | None] | None = None,
) -> list[str]:
    """Assign train/val/test per item so that every label keeps its share in each split.

    Args:
        label_sets: the labels of each item (None: unlabeled, which goes to
            ``unlabeled``).
        val: fraction for validation; test: fraction for test (val + test < 1).
        seed: random seed; the same inputs and seed give the same splits.
        groups: a group id per item (a group's images stay in one split), or None.
        fixed: a split already decided per item, or None.

    Returns:
        The split name per item.
    """
    out = fixed_splits(label_sets, val, test, fixed)
    units = _units(len(label_sets), out, groups)
    fractions = np.array([1.0 - val - test, val, test])
    for unit, split in zip(units, _deal(units, label_sets, fractions, seed), strict=True):
        for i in unit:
            out[i] = _ORDER[split]
    return [s or "train" for s in out]


def iterative_folds(
    label_sets: Sequence[frozenset[str] | None],
    k: int,
    seed: int,
    groups: Sequence[str | None] | None = None,
) -> list[int | None]:
    """A fold 1..k per labelled item, every label spread evenly over the folds.

    The same dealing as :func:`iterative_splits`, into k equal parts; a group's images
    stay in one fold. An item with no labels (``--allow-empty``) is placed like any
    other, by how many images each fold still wants.

    Args:
        label_sets: the labels of each item (None: unlabeled, which gets no fold).
        k: how many folds, at least 2.
        seed: the same inputs and seed give the same folds.
        groups: a group id per item, or None.

    Returns:
        The fold per item, None for unlabeled ones.
    """
    fixed = [None if s is not None else "unlabeled" for s in label_sets]
    units = _units(len(label_sets), fixed, groups)
    out: list[int | None] = [None] * len(label_sets)
    for unit, fold in zip(units, _deal(units, label_sets, np.full(k, 1.0 / k), seed), strict=True):
        for i in unit:
            out[i] = fold + 1
    return out


def _deal(units, label_sets, fractions: np.ndarray, seed: int) -> list[int]:
    """The part (an index into ``fractions``) each unit goes to, rarest label first."""
    unit_labels = [set().union(*(label_sets[i] for i in u)) for u in units]
    names = sorted(set().union(*unit_labels)) if unit_labels else []
    column = {name: j for j, name in enumerate(names)}
    counts = np.zeros((len(units), len(names)))
    for k, unit in enumerate(units):
        for i in unit:
            for name in label_sets[i]:
                counts[k, column[name]] += 1
    sizes = np.array([len(u) for u in units], dtype=float)
    # What each part still wants: per label, and in images.
    want_label = np.outer(fractions, counts.sum(axis=0))
    want_total = fractions * sizes.sum()
    closed = np.where(fractions > 0, 0.0, -np.inf)  # a part of size 0 never takes a unit
    rng = np.random.default_rng(seed)
    placed = [0] * len(units)
    left = set(range(len(units)))
    while left:
        remaining = counts[sorted(left)].astype(bool).sum(axis=0)
        with_label = np.flatnonzero(remaining)
        if len(with_label):
            # The label with the fewest units left to place (ties: the first by name).
            rarest = with_label[np.argmin(remaining[with_label])]
            todo = [k for k in sorted(left) if counts[k, rarest] > 0]
        else:
            rarest, todo = None, sorted(left)
        for k in rng.permutation(todo):
            wants = want_label[:, rarest] if rarest is not None else want_total
            # Most wanted for the label, then most wanted overall, then chance.
            chance = rng.random(len(fractions))
            key = np.lexsort((chance, -(want_total + closed), -(wants + closed)))
            part = int(key[0])
            want_label[part] -= counts[k]
            want_total[part] -= sizes[k]
            placed[int(k)] = part
            left.discard(int(k))
    return placed


def label_balance(records) -> dict:
    """dataset.json keys for a multi-label dataset beyond its per-label counts.

    ``split_images``: images per split; ``label_fractions``: per split, the share of
    its images that carry each label (what iterative stratification keeps level).
    """
    from imgkit.data.dataset import label_set

    by_split: dict[str, list] = defaultdict(list)
    for r in records:
        by_split[r.split or "train"].append(label_set(r.label))
    fractions = {}
    for split, sets in sorted(by_split.items()):
        names = sorted(set().union(*map(set, sets)))
        fractions[split] = {c: round(sum(c in s for s in sets) / len(sets), 4) for c in names}
    return {
        "split_images": {split: len(sets) for split, sets in sorted(by_split.items())},
        "label_fractions": fractions,
    }
