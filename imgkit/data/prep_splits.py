"""Prep's last step: the images' splits (and folds) assigned, the dataset files written.

Single-label data is stratified by class (:mod:`imgkit.data.splits`), multi-label data
by label (:mod:`imgkit.data.multisplit`), image+mask pairs drawn at random; groups are
kept whole in all three.
"""

from __future__ import annotations

from dataclasses import replace

from imgkit.data.dataset import label_set
from imgkit.data.dataset_write import write_dataset
from imgkit.data.folds import fold_records
from imgkit.data.grouping import split_balance
from imgkit.data.multisplit import label_balance
from imgkit.data.prep_options import DEFAULT_TEST, DEFAULT_VAL, PrepOptions
from imgkit.data.record_checks import shown_name
from imgkit.data.records import Record
from imgkit.data.splits import assign_splits


def _assign(
    records: list[Record], val: float | None, test: float | None, seed: int, multilabel=False
) -> tuple[list[Record], float, float]:
    fixed = [r.split for r in records]
    # A source with its own test (or val) set, like fashion-mnist's official test set,
    # gets no second one carved out unless asked for.
    val = val if val is not None else (0.0 if "val" in fixed else DEFAULT_VAL)
    test = test if test is not None else (0.0 if "test" in fixed else DEFAULT_TEST)
    groups = None
    if any(r.group is not None for r in records):
        # An image without a group is a group of its own.
        groups = [r.group if r.group is not None else f"\0{i}" for i, r in enumerate(records)]
    if multilabel:
        from imgkit.data.multisplit import iterative_splits

        # An empty label (--allow-empty) is an image with no label, not an unlabeled one.
        sets = [frozenset(label_set(r.label)) if r.label is not None else None for r in records]
        splits = iterative_splits(sets, val, test, seed, groups=groups, fixed=fixed)
    else:
        labels = [r.label for r in records]
        splits = assign_splits(labels, val, test, seed, groups=groups, fixed=fixed)
    return [replace(r, split=s) for r, s in zip(records, splits, strict=True)], val, test


def _assign_pairs(
    records: list[Record], val: float | None, test: float | None, seed: int
) -> tuple[list[Record], float, float]:
    """Random splits for image+mask pairs: no classes to stratify by."""
    val = DEFAULT_VAL if val is None else val
    test = DEFAULT_TEST if test is None else test
    groups = None
    if any(r.group is not None for r in records):
        groups = [r.group if r.group is not None else f"\0{i}" for i, r in enumerate(records)]
    # One stand-in label for all: assign_splits then draws a plain random split.
    splits = assign_splits(["object"] * len(records), val, test, seed, groups=groups)
    return [replace(r, split=s) for r, s in zip(records, splits, strict=True)], val, test


def split_and_write(workdir, output, got, sources, options: PrepOptions, mask_table=None):
    """Assign the splits (and folds) and write manifest, rejects and dataset.json.

    Returns:
        (the records with their splits, the dataset.json content).
    """
    multilabel, segmentation = got.task == "multilabel", options.masks is not None
    val, test, seed = options.val, options.test, options.seed
    records = got.records
    if options.folds is not None:
        # Every labelled image is in a fold: a source's own val split joins them, and a
        # held-out test split is made only when asked for.
        val, test = 0.0, test or 0.0
        records = [replace(r, split=None) if r.split == "val" else r for r in records]
    if segmentation:
        records, val_used, test_used = _assign_pairs(records, val, test, seed)
    else:
        records, val_used, test_used = _assign(records, val, test, seed, multilabel)
    if options.folds is not None:
        records = fold_records(records, options.folds, seed, segmentation, multilabel)
    task = "segmentation" if segmentation else "classification"
    # Any file not taken (a hidden file, a non-image, a refused name) may have a line
    # break in its name too: each gets one row.
    rejects = [
        replace(r, path=shown_name(r.path), reason=shown_name(r.reason)) for r in got.rejects
    ]
    info = write_dataset(
        workdir,
        records,
        rejects,
        task="multilabel" if multilabel else task,
        source=sources,
        seed=seed,
        final_folder=output,
        extra={
            "val": val_used,
            "test": test_used,
            "limit": options.limit,
            "sources": got.details,
            **(label_balance(records) if multilabel else split_balance(records)),
            **(mask_table.info() if mask_table is not None else {}),
        },
    )
    return records, info
