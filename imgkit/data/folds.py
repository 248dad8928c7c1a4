"""Cross-validation folds: assigned once in the dataset, read as ordinary splits.

``prep --folds K`` gives every labelled image (but the held-out test split and
pseudo-labels) a fold 1..K in manifest.csv, stratified by class and keeping each group
whole (:func:`assign_folds`). :func:`fold_view` shows the dataset as fold k's run sees
it: fold k is the ``val`` split, the other folds (and pseudo-labels) are ``train``, and
test stays test, so the training code needs nothing new. The view decodes nothing of
its own and copies nothing: its train and val images are rows of the dataset's one
cached train split, read from its memory map a batch at a time (:class:`Rows`).

manifest.csv is the truth about folds: dataset.json's ``folds`` and ``fold_counts``
only record them.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from imgkit.data.dataset import Dataset
from imgkit.data.records import Record
from imgkit.data.rows import Rows
from imgkit.errors import BadDatasetError, BadInputError

# The split every folded image is in; a fold's view renames its own fold to "val".
FOLDED_SPLIT = "train"


def assign_folds(
    labels: Sequence[str | None],
    k: int,
    seed: int,
    groups: Sequence[str | None] | None = None,
) -> list[int | None]:
    """A fold 1..k for each labelled item, stratified by label, each group in one fold.

    Units (single items, or whole groups labelled by their majority class) are dealt
    class by class, largest first and in a seeded random order among equals, each to
    the fold holding the fewest of that class so far (ties: the fewest in all), so
    every fold gets about 1/k of each class.

    Args:
        labels: class name per item; None (unlabeled) gets no fold.
        k: how many folds, at least 2.
        seed: the same inputs and seed give the same folds.
        groups: group id per item (None: a group of its own), or None.

    Returns:
        The fold per item, None for unlabeled ones.
    """
    if k < 2:
        raise BadInputError(f"--folds must be at least 2, got {k}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        if label is not None:
            group = groups[i] if groups is not None and groups[i] is not None else None
            members[f"g:{group}" if group is not None else f"i:{i}"].append(i)
    if len(members) < k:
        raise BadInputError(
            f"--folds {k}: only {len(members)} labelled images or groups to spread over them"
        )
    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for _, idx in sorted(members.items()):
        majority = Counter(labels[i] for i in idx).most_common(1)[0][0]
        by_class[str(majority)].append(idx)
    rng = np.random.default_rng(seed)
    out: list[int | None] = [None] * len(labels)
    totals = np.zeros(k, dtype=np.int64)
    for label in sorted(by_class):
        units = [by_class[label][j] for j in rng.permutation(len(by_class[label]))]
        units.sort(key=len, reverse=True)  # stable: equal sizes keep the random order
        counts = np.zeros(k, dtype=np.int64)
        for unit in units:
            fold = int(np.lexsort((totals, counts))[0])
            counts[fold] += len(unit)
            totals[fold] += len(unit)
            for i in unit:
                out[i] = fold + 1
    return out


def fold_records(
    records: list[Record], k: int, seed: int, segmentation: bool = False, multilabel: bool = False
) -> list[Record]:
    """Records with folds: every labelled train or val record (every image+mask pair, for
    segmentation) gets one and the train split; test, unlabeled and pseudo keep theirs.
    Multi-label records are stratified for all their labels at once
    (:func:`imgkit.data.multisplit.iterative_folds`)."""
    take = [
        i
        for i, r in enumerate(records)
        if (r.label is not None or segmentation) and not r.pseudo and r.split in ("train", "val")
    ]
    if multilabel:
        folds = _multilabel_folds([records[i] for i in take], k, seed)
    else:
        labels = [records[i].label or "object" for i in take]
        folds = assign_folds(labels, k, seed, [records[i].group for i in take])
    out = [r if r.pseudo else replace(r, fold=None) for r in records]
    for i, fold in zip(take, folds, strict=True):
        out[i] = replace(records[i], split=FOLDED_SPLIT, fold=fold)
    return out


def _multilabel_folds(records: list[Record], k: int, seed: int) -> list[int | None]:
    from imgkit.data.dataset import label_set
    from imgkit.data.multisplit import iterative_folds

    if k < 2:
        raise BadInputError(f"--folds must be at least 2, got {k}")
    # An image without a group is a group of its own.
    groups = [r.group if r.group is not None else f"\0{i}" for i, r in enumerate(records)]
    if len(set(groups)) < k:
        raise BadInputError(
            f"--folds {k}: only {len(set(groups))} labelled images or groups to spread over them"
        )
    sets = [frozenset(label_set(r.label)) for r in records]
    return iterative_folds(sets, k, seed, groups)


def fold_count(ds: Dataset) -> int:
    """How many folds the dataset has (0: none), read from manifest.csv's fold column.

    Raises:
        BadDatasetError: a fold that is not a whole number from 1 up.
    """
    if "fold" not in ds.manifest.columns:
        return 0
    values = [v for v in ds.manifest["fold"] if v != ""]
    try:
        folds = {int(v) for v in values}
    except ValueError:
        folds = {0}
    if folds and min(folds) < 1:
        raise BadDatasetError(f"{ds.root}/manifest.csv: the fold column holds a value below 1")
    return max(folds, default=0)


def check_fold(ds: Dataset, k: int) -> int:
    """Check that fold ``k`` exists in ``ds``; return the number of folds.

    Raises:
        BadDatasetError: the dataset has no folds, or not fold ``k``.
    """
    n = fold_count(ds)
    if n == 0:
        raise BadDatasetError(
            f"{ds.root}: the dataset has no folds (give it some with "
            f"`imgkit prep {ds.root} --folds K -o NEW`)"
        )
    if not 1 <= k <= n:
        raise BadDatasetError(f"--fold {k}: {ds.root} has folds 1..{n}")
    return n


class FoldView(Dataset):
    """A folded dataset as fold ``k``'s run sees it: fold k is val, the rest is train.

    Its train and val images are rows of the dataset's cached train split (decoded
    once for all folds), read on demand from its memory map (:class:`Rows`), so a
    fold's memory does not grow with the dataset; test and unlabeled are the dataset's
    own.
    """

    def __init__(self, base: Dataset, k: int):
        self.folds = check_fold(base, k)
        m = base.manifest
        if (m["split"] == "val").any():
            raise BadDatasetError(
                f"{base.root}: has both folds and a val split; a fold's validation is the "
                "fold itself (make the folds again with `imgkit prep DATA --folds K`)"
            )
        in_fold = (m["split"] == FOLDED_SPLIT) & (m["fold"] == str(k))
        super().__init__(base.root, m.assign(split=m["split"].where(~in_fold, "val")), base.info)
        self.info = {**base.info, "fold": k}
        self.base, self.k = base, k
        train_rows = m[m["split"] == FOLDED_SPLIT]
        own = (train_rows["fold"] == str(k)).to_numpy()
        self.positions = {"val": np.flatnonzero(own), "train": np.flatnonzero(~own)}

    @property
    def hash(self) -> str:
        """The dataset's hash with the fold: each fold's runs and caches are its own."""
        text = f"{self.base.hash} fold {self.k} of {self.folds}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _base_split(self, split: str) -> str:
        return FOLDED_SPLIT if split in self.positions else split

    def cache_file(self, split, size, channels, resize="stretch"):
        return self.base.cache_file(self._base_split(split), size, channels, resize)

    def arrays(self, split, size, channels, resize="stretch", progress=None, workers=None):
        pool = self.base.arrays(self._base_split(split), size, channels, resize, progress, workers)
        return Rows(pool, self.positions[split]) if split in self.positions else pool

    def mask_arrays(self, split, size, workers=None):
        pool = self.base.mask_arrays(self._base_split(split), size, workers)
        return Rows(pool, self.positions[split]) if split in self.positions else pool


def fold_view(ds: Dataset, k: int | None) -> Dataset:
    """``ds`` as fold ``k``'s run sees it (:class:`FoldView`), or ``ds`` itself for None."""
    return ds if k is None else FoldView(ds, int(k))


def as_trained(ds: Dataset, record: dict) -> Dataset:
    """``ds`` as a run recorded with ``record`` (a bundle's ``dataset`` entry) saw it:
    fold k's view (fold k its val split, the other folds its train split) when the run
    was fold k of this very folded dataset; else ``ds`` itself.
    """
    k = record.get("fold")
    if k and ds.info.get("folds") and record.get("base_hash") == ds.hash:
        return fold_view(ds, int(k))
    return ds
