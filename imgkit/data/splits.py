"""Which split each image goes to: train, val, test, stratified by class, groups whole.

Used by ``imgkit prep`` for single-label and image+mask data; multi-label data is split
by :mod:`imgkit.data.multisplit`, which shares :func:`fixed_splits`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from imgkit.errors import BadDatasetError


def fixed_splits(labels: Sequence, val: float, test: float, fixed) -> list[str | None]:
    """The splits decided before any drawing: ``fixed`` ones, and "unlabeled" for an item
    without a label (None); None for the items left to split. Checks the fractions."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise BadDatasetError(
            f"--val {val} and --test {test} must be fractions with val + test < 1"
        )
    out: list[str | None] = list(fixed) if fixed is not None else [None] * len(labels)
    for i, label in enumerate(labels):
        if out[i] is None and label is None:
            out[i] = "unlabeled"
    return out


def assign_splits(
    labels: Sequence[str | None],
    val: float,
    test: float,
    seed: int,
    groups: Sequence[str | None] | None = None,
    fixed: Sequence[str | None] | None = None,
) -> list[str]:
    """Assign train/val/test to each item, stratified by label and kept whole by group.

    Items with a ``fixed`` split keep it; unlabeled items go to ``unlabeled``. The rest
    are split per class (so each split keeps the class balance); when ``groups`` are
    given, whole groups are assigned, stratified by each group's majority label, and
    a group never spans two splits.

    Args:
        labels: class name per item (None for unlabeled).
        val: fraction for validation, 0 <= val < 1.
        test: fraction for test, 0 <= test < 1, val + test < 1.
        seed: random seed; the same inputs and seed give the same splits.
        groups: group id per item, or None.
        fixed: a split already decided per item, or None.

    Returns:
        The split name per item.
    """
    out = fixed_splits(labels, val, test, fixed)
    n = len(labels)
    free = [i for i in range(n) if out[i] is None]
    rng = np.random.default_rng(seed)

    # Units to split: single items, or whole groups labelled by their majority class.
    if groups is not None:
        members: dict[str, list[int]] = defaultdict(list)
        for i in free:
            members[str(groups[i])].append(i)
        units = [
            (Counter(labels[i] for i in idx).most_common(1)[0][0], idx)
            for _, idx in sorted(members.items())
        ]
    else:
        units = [(labels[i], [i]) for i in free]

    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for label, idx in units:
        by_class[str(label)].append(idx)
    for label in sorted(by_class):
        class_units = by_class[label]
        order = rng.permutation(len(class_units))
        total = sum(len(u) for u in class_units)
        want_test, want_val = test * total, val * total
        got_test = got_val = 0
        for k in order:
            unit = class_units[k]
            # Fill test, then val, each up to the nearest count to its fraction.
            if got_test + len(unit) / 2 <= want_test:
                split, got_test = "test", got_test + len(unit)
            elif got_val + len(unit) / 2 <= want_val:
                split, got_val = "val", got_val + len(unit)
            else:
                split = "train"
            for i in unit:
                out[i] = split
    return [s or "train" for s in out]
