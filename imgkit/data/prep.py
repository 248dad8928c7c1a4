"""Make a dataset folder from image sources: the library side of ``imgkit prep``.

Every image is opened and decoded once here, so that training later never meets an
unreadable file; what cannot be used goes to rejects.csv with the reason, and the run
goes on (unless ``max_bad`` says too many are broken).
"""

from __future__ import annotations

import os
import secrets
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgkit.data.bad_inputs import BadCounter, reason_kind
from imgkit.data.classmasks import class_table
from imgkit.data.dataset import Dataset, label_set
from imgkit.data.dataset_write import write_dataset
from imgkit.data.folds import fold_records
from imgkit.data.grouping import compile_group_by, regroup, split_balance
from imgkit.data.images import DEFAULT_MAX_PIXELS, check_image, is_skipped
from imgkit.data.multisplit import label_balance
from imgkit.data.prep_output import _check_output, _replace_folder, summarize
from imgkit.data.record_checks import dedupe, refuse_line_breaks, shown_name
from imgkit.data.records import Record, Reject
from imgkit.data.sources import Progress, SourceContext, read_source, stratified_subset
from imgkit.data.splits import assign_splits
from imgkit.errors import BadImageError, BadInputError
from imgkit.fileio import atomic_dir

DEFAULT_VAL = 0.1
DEFAULT_TEST = 0.1


def _collect(item, records, reasons, counter: BadCounter) -> None:
    i, future = item
    reasons[i] = future.result()
    if reasons[i] is not None:
        counter.add(Reject(records[i].path, reasons[i]))


def _check_all(
    records: list[Record],
    workdir: Path,
    counter: BadCounter,
    progress: Progress | None,
    max_pixels: int,
) -> tuple[list[Record], list[Reject]]:
    """Open and decode every record's image once, in threads; split good from bad."""
    if not records:
        return [], []

    def check(record: Record) -> str | None:
        path = Path(record.path)
        try:
            check_image(path if path.is_absolute() else workdir / path, max_pixels)
        except BadImageError as e:
            return e.reason
        return None

    reasons: list[str | None] = [None] * len(records)
    workers = os.cpu_count() or 2
    # A bounded window of futures, collected oldest first: each image costs O(1) here
    # (waiting on the whole pending set per completion made prep quadratic), and the
    # queue never holds more than a few batches' worth of work.
    window = 8 * workers
    step = max(1, len(records) // 200)
    shown = 0  # progress takes increments

    def show(done: int) -> None:
        nonlocal shown
        if progress is not None and done > shown:
            progress("checking images", done - shown, len(records))
            shown = done

    pool = ThreadPoolExecutor(workers)
    try:
        inflight: deque[tuple[int, Future]] = deque()
        for i, record in enumerate(records):
            inflight.append((i, pool.submit(check, record)))
            if len(inflight) >= window:
                _collect(inflight.popleft(), records, reasons, counter)
            if (i + 1) % step == 0:
                show(i + 1 - len(inflight))
        while inflight:
            _collect(inflight.popleft(), records, reasons, counter)
        show(len(records))
    finally:
        # On a --max-bad stop, images not yet checked are not worth waiting for.
        pool.shutdown(wait=True, cancel_futures=True)
    good = [r for r, reason in zip(records, reasons, strict=True) if reason is None]
    bad = [Reject(r.path, reason) for r, reason in zip(records, reasons, strict=True) if reason]
    return good, bad


# --- assembling ----------------------------------------------------------------------


def _limit(records: list[Record], limit: int | None, seed: int) -> list[Record]:
    """At most ``limit`` images per fixed split (unassigned ones count as one), stratified."""
    if limit is None:
        return records
    by_split: dict[str | None, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_split[r.split].append(i)
    keep: list[int] = []
    for members in by_split.values():
        chosen = stratified_subset([records[i].label for i in members], limit, seed)
        keep.extend(members[j] for j in chosen)
    return [records[i] for i in sorted(keep)]


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


def _store_cache(folder: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    """Fill the decode cache for every split whose images all came as arrays."""
    dataset = Dataset.load(folder)
    stored = []
    for split in dataset.splits():
        paths = list(dataset.rows(split)["path"])
        if not all(p in arrays for p in paths):
            continue
        if len({arrays[p].shape for p in paths}) != 1:
            continue
        dataset.store_arrays(split, np.stack([arrays[p] for p in paths]), resize="stretch")
        stored.append(split)
    return stored


def _warnings(records: list[Record], multilabel: bool = False) -> list[str]:
    if multilabel:
        counts = Counter(name for r in records for name in label_set(r.label))
    else:
        counts = Counter(r.label for r in records if r.label is not None)
    out = []
    if len(counts) == 1 and not multilabel:
        out.append(f"only one class ({next(iter(counts))!r}): a classifier needs at least two")
    few = sorted(k for k, n in counts.items() if n < 5)
    if few:
        out.append(f"classes with fewer than 5 images: {', '.join(few[:10])}")
    return out


@dataclass
class _Gathered:
    """What the sources gave: records, rejects, which records need no check, arrays."""

    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    trusted: set[str] = field(default_factory=set)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    details: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    task: str | None = None


def _read_sources(sources: list[str], ctx: SourceContext, group_pattern) -> _Gathered:
    """Read every source in order (regrouped by ``--group-by`` when given)."""
    got = _Gathered()
    for spec in sources:
        result = read_source(spec, ctx)
        if group_pattern is not None:
            result.records, unmatched = regroup(result.records, group_pattern, spec, ctx.workdir)
            if unmatched:
                result.warnings.append(
                    f"--group-by matched no group in {unmatched} of {len(result.records)} "
                    "paths: each of those is a group of its own"
                )
        got.records.extend(result.records)
        got.rejects.extend(result.rejects)
        if result.trusted:
            got.trusted.update(r.path for r in result.records)
        if result.arrays:
            got.arrays.update(result.arrays)
        got.details.append(result.description)
        got.notes.extend(f"{spec}: {w}" for w in result.warnings)
        if got.details[:-1] and (result.task or None) != got.task:
            raise BadInputError(
                f"{spec}: a {result.task or 'single-label'} source cannot be mixed with "
                f"the {got.task or 'single-label'} sources before it"
            )
        got.task = result.task
    return got


def _filter(
    got: _Gathered, workdir, counter, limit, seed, masks, progress, max_pixels, mask_table=None
) -> None:
    """Drop duplicates, apply ``limit``, pair masks, and open every unchecked image once."""
    got.records, duplicates = dedupe(got.records)
    got.rejects.extend(duplicates)
    got.records = _limit(got.records, limit, seed)
    bad_so_far = [r for r in got.rejects if not is_skipped(r.reason)]
    counter.total = len(got.records) + len(bad_so_far)
    for r in bad_so_far:
        counter.add(r)
    if masks is not None:
        # Pairs are checked together (image and mask, and their sizes) right here.
        from imgkit.data.segprep import attach_masks

        got.records, bad_pairs, mask_notes = attach_masks(got.records, masks, workdir, mask_table)
        got.notes.extend(mask_notes)
        for r in bad_pairs:
            got.rejects.append(r)
            if not is_skipped(r.reason):
                counter.add(r)
        got.trusted.update(r.path for r in got.records)
    got.records, broken_names = refuse_line_breaks(got.records)
    for r in broken_names:
        got.rejects.append(r)
        counter.add(r)
    unchecked = [r for r in got.records if r.path not in got.trusted]
    good, broken = _check_all(unchecked, workdir, counter, progress, max_pixels)
    good_paths = {r.path for r in good}
    got.records = [r for r in got.records if r.path in got.trusted or r.path in good_paths]
    got.rejects.extend(broken)


def _require_usable(records, rejects, sources: list[str], masks) -> None:
    if not records:
        kinds = Counter(reason_kind(r.reason) for r in rejects).most_common(3)
        why = "; ".join(f"{k} ({n})" for k, n in kinds) or "no image files found"
        raise BadInputError(f"no usable images in {', '.join(sources)}: {why}")
    if (
        masks is None
        and not any(r.label for r in records)
        and not any(r.split == "unlabeled" for r in records)
    ):
        raise BadInputError(f"no classes found in {', '.join(sources)}")


def _check_arguments(sources: list[str], limit, folds, val) -> None:
    """Refuse what no source can make right, before anything is read."""
    if not sources:
        raise BadInputError("no sources given (folders, CSV files or fashion-mnist)")
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1, got {limit}")
    if folds is not None and val:
        raise BadInputError("--folds and --val: each fold is in turn the validation; drop --val")


def prepare(
    sources: list[str],
    output: str | os.PathLike,
    *,
    val: float | None = None,
    test: float | None = None,
    seed: int = 0,
    max_bad: str | int | float | None = None,
    overwrite: bool = False,
    idx_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name_labels: bool | None = None,
    masks: str | os.PathLike | None = None,
    group_by: str | None = None,
    label_sep: str = " ",
    images: str | os.PathLike | None = None,
    folds: int | None = None,
    allow_empty: bool = False,
    mask_classes: str | os.PathLike | None = None,
    mask_colors: str | os.PathLike | None = None,
) -> dict:
    """Read image sources, check every image, assign splits, write a dataset folder.

    Args:
        sources: folders, CSV files, zip/tar archives, IDX folders or "fashion-mnist"
            (see :mod:`imgkit.data.sources`).
        output: the dataset folder to make.
        val: fraction for validation (default 0.1, or 0 when a source fixes val).
        test: fraction for test (default 0.1, or 0 when a source has its own test set).
        seed: seed for the splits and ``limit`` subsets.
        max_bad: stop when more inputs than this are unreadable: a count (10) or a
            fraction (0.05); hidden files and non-image files do not count.
        overwrite: replace an existing dataset folder (only once the new one is done).
        idx_dir: where the fashion-mnist IDX files are.
        limit: at most this many images per split of the sources, stratified by class.
        progress: called as ``progress(task, advance, total)``.
        max_pixels: images with more pixels are rejected as possible decompression bombs.
        name_labels: label folders by Kaggle-style file names (``cat.12.jpg``): None
            decides from the names, True whenever any name fits, False never (see
            :mod:`imgkit.data.sources.kaggle_names`).
        masks: a folder of masks matched to the images by file stem, or a CSV with
            path,mask columns: makes a segmentation dataset (see :mod:`imgkit.data.segprep`).
        group_by: a regular expression searched in each image's path relative to its
            source; its first group (or the whole match) is the image's group, kept in
            one split. Images it does not match are groups of their own (counted in a
            warning). See :mod:`imgkit.data.grouping`.
        label_sep: what separates a multi-label CSV's labels (default a space).
        images: the folder a Planet-style multi-label CSV's image names are in.
        folds: give every labelled image but the test split a cross-validation fold
            1..K (stratified, groups whole; :mod:`imgkit.data.folds`) in place of a val
            split; the test split is then 0 unless ``test`` asks for one.
        allow_empty: keep a multi-label CSV's rows with no label, as images with none.
        mask_classes: with ``masks``, a file naming the classes of multi-class masks,
            one per line for the values 0..C (the background first).
        mask_colors: with ``masks``, a file of lines ``NAME R G B`` mapping RGB mask
            colours to the classes 0..C (see :mod:`imgkit.data.classmasks`).

    Returns:
        The dataset.json content, plus ``path``, ``rejects_file``, ``bad`` (count),
        ``skipped`` (count), ``reject_reasons`` ([(reason, count)], most common first),
        ``cached_splits`` and ``warnings``.

    Raises:
        OutputExistsError: ``output`` exists and ``overwrite`` is off.
        BadInputError: a source cannot be read, or no usable image is left.
        OfflineError: fashion-mnist is not here and cannot be downloaded.
        ImgkitError: more bad images than ``max_bad``.
    """
    sources = [str(s) for s in sources]
    _check_arguments(sources, limit, folds, val)
    output = Path(output)
    counter = BadCounter(max_bad)  # parses max_bad before any work
    group_pattern = compile_group_by(group_by) if group_by else None
    mask_table = class_table(masks, mask_classes, mask_colors)
    _check_output(output, sources, overwrite)
    replacing = output.exists()
    staging = (
        output.with_name(f".{output.name}.new-{secrets.token_hex(4)}") if replacing else output
    )

    with atomic_dir(staging) as workdir:
        ctx = SourceContext(
            workdir=workdir,
            idx_dir=Path(idx_dir) if idx_dir else None,
            limit=limit,
            seed=seed,
            progress=progress,
            name_labels=name_labels,
            label_sep=label_sep or " ",
            images=Path(images) if images else None,
            allow_empty=allow_empty,
        )
        got = _read_sources(sources, ctx, group_pattern)
        _filter(got, workdir, counter, limit, seed, masks, progress, max_pixels, mask_table)
        records, rejects, notes = got.records, got.rejects, got.notes
        _require_usable(records, rejects, sources, masks)

        split = _Split(val, test, seed, folds, mask_table)
        records, info = _split_and_write(workdir, output, got, sources, masks, split, limit)
        cached = _store_cache(workdir, got.arrays) if got.arrays else []

    if replacing:
        _replace_folder(staging, output)

    warnings = _warnings(records, info["task"] == "multilabel")
    return summarize(info, output, rejects, cached, notes + warnings)


@dataclass(frozen=True)
class _Split:
    """How to split: val and test fractions (None: the defaults), seed, folds."""

    val: float | None
    test: float | None
    seed: int
    folds: int | None = None
    mask_table: object = None  # multi-class masks' MaskClasses


def _split_and_write(workdir, output, got, sources, masks, split: _Split, limit):
    """Assign the splits (and folds) and write manifest, rejects and dataset.json.

    Returns:
        (the records with their splits, the dataset.json content).
    """
    multilabel, segmentation = got.task == "multilabel", masks is not None
    val, test, seed = split.val, split.test, split.seed
    records = got.records
    if split.folds is not None:
        # Every labelled image is in a fold: a source's own val split joins them, and a
        # held-out test split is made only when asked for.
        val, test = 0.0, test or 0.0
        records = [replace(r, split=None) if r.split == "val" else r for r in records]
    if masks is not None:
        records, val_used, test_used = _assign_pairs(records, val, test, seed)
    else:
        records, val_used, test_used = _assign(records, val, test, seed, multilabel)
    if split.folds is not None:
        records = fold_records(records, split.folds, seed, segmentation, multilabel)
    task = "segmentation" if masks is not None else "classification"
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
            "limit": limit,
            "sources": got.details,
            **(label_balance(records) if multilabel else split_balance(records)),
            **(split.mask_table.info() if split.mask_table is not None else {}),
        },
    )
    return records, info
