"""The input plan: what predict, tta and segment read, as one ordered stream.

Every inference path (local, sharded, on Ray, classification or masks) lists its inputs
here and nowhere else: :func:`plan_inputs` turns the command line's inputs into
:class:`Item` s and :class:`~imgkit.data.records.Reject` s in input order, with one rule
for a dataset folder's split (:func:`default_split`) and one for a shard (contiguous
slices of the whole stream, rejects included, :func:`imgkit.infer.inputs.shard_bounds`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from imgkit.data.dataset import Dataset
from imgkit.data.folds import as_trained
from imgkit.data.records import Reject
from imgkit.errors import BadDatasetError
from imgkit.infer.inputs import is_dataset_folder, iter_input_paths, shard_bounds

# The splits read when --split is not given, in order of preference. test and unlabeled
# hold images no model of the dataset learned from; val and train are taken only from a
# dataset the bundle was not trained on, where they are as unseen as a test split. On the
# bundle's own dataset they would be scored as if new (train was fitted, val chose the
# epoch, the temperature and the threshold), so there the split must be named.
UNSEEN_SPLITS = ("test", "unlabeled")
FOREIGN_SPLITS = (*UNSEEN_SPLITS, "val", "train")


@dataclass(frozen=True, eq=False)
class Source:
    """The dataset split a run of items comes from (its decode cache may hold them)."""

    dataset: Dataset
    split: str


@dataclass(frozen=True)
class Item:
    """One image to run, in input order.

    Attributes:
        path: the image file.
        own: it belongs to the dataset the bundle was trained on (never inverted in
            "auto": it is what the model learned from).
        truth: its true mask file (a segmentation dataset's split), else None.
        source: the dataset split it was listed from, else None.
        row: its position in that split.
    """

    path: Path
    own: bool = False
    truth: Path | None = None
    source: Source | None = None
    row: int = 0


def trained_on(bundle, dataset: Dataset) -> bool:
    """Whether ``bundle`` was trained on ``dataset`` (same manifest hash; for a fold's run
    or a cross-validation ensemble, the hash of the whole folded dataset)."""
    record = bundle.meta.get("dataset") or {}
    return dataset.hash in {record.get("hash"), record.get("base_hash")} - {None, ""}


def default_split(dataset: Dataset, own: bool) -> str:
    """The split to read from ``dataset`` when none is named.

    test, else unlabeled (a Kaggle test archive prepped on its own); for a dataset the
    bundle was not trained on (``own`` False), then val, then train.

    Raises:
        BadDatasetError: none of those splits is there; for the bundle's own dataset
            the message says to name the split.
    """
    present = dataset.splits()
    for split in FOREIGN_SPLITS if not own else UNSEEN_SPLITS:
        if split in present:
            return split
    have = ", ".join(present) or "none"
    if own:
        raise BadDatasetError(
            f"{dataset.root}: no test or unlabeled split, and the model was trained on this "
            f"dataset (splits here: {have}); name the split to read with --split"
        )
    raise BadDatasetError(f"{dataset.root}: no images to read (splits here: {have})")


def _dataset_items(bundle, folder, split: str | None) -> Iterator[Item]:
    # A fold's run reads its folded dataset as it trained on it: --split val is its fold.
    ds = as_trained(Dataset.load(folder), bundle.meta.get("dataset") or {})
    own = trained_on(bundle, ds)
    source = Source(ds, split if split is not None else default_split(ds, own))
    rows = ds.rows(source.split)
    masks = bundle.task == "segmentation" and "mask" in rows.columns
    for row, (rel, mask) in enumerate(
        zip(rows["path"], rows["mask"] if masks else [""] * len(rows), strict=True)
    ):
        truth = ds.abspath(mask) if mask else None
        yield Item(ds.abspath(rel), own, truth, source, row)


def _listed(bundle, inputs, stdin, split) -> Iterator[Item | Reject]:
    for name in inputs:
        if str(name) != "-" and is_dataset_folder(name):
            yield from _dataset_items(bundle, name, split)
            continue
        for path, reject in iter_input_paths([name], stdin):
            yield reject if reject is not None else Item(path)


def plan_inputs(
    bundle,
    inputs: Iterable[str | os.PathLike],
    stdin: TextIO | None = None,
    split: str | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Item | Reject]:
    """Everything the command line names, in order: an :class:`Item` per image to run and
    a Reject per input that cannot be (missing, hidden, not an image file in a folder).

    Files are taken as given (decoding says whether each is an image); folders are
    walked recursively in sorted order; ``-`` reads paths from ``stdin``, one a line;
    a dataset folder gives its ``split`` (:func:`default_split` when None), with each
    image's true mask for a segmentation bundle. Without a shard the stream is lazy
    (inputs are listed as they are consumed); with ``shard=(i, n)`` everything is
    listed first, to count it, and the i-th of n contiguous slices is kept.

    Args:
        bundle: the Bundle that will run the items (its task, its training dataset).
        inputs: files, folders, dataset folders or ``-``.
        stdin: the stream ``-`` reads from.
        split: the split of dataset folders.
        shard: ``(i, n)``, 1-based, or None for everything.

    Raises:
        BadDatasetError: a dataset folder has no such split, or none to default to.
    """
    listed = _listed(bundle, inputs, stdin, split)
    if shard is None:
        yield from listed
        return
    everything = list(listed)
    start, stop = shard_bounds(len(everything), shard)
    yield from everything[start:stop]
