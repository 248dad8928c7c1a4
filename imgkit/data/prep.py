"""Make a dataset folder from image sources: the library side of ``imgkit prep``.

Every image is opened and decoded once, so that training later never meets an
unreadable file; what cannot be used goes to rejects.csv with the reason, and the run
goes on (unless ``max_bad`` says too many are broken).

:func:`prepare` runs the steps in order: the sources read, deduplicated, paired with
masks and checked (:mod:`imgkit.data.prep_gather`, :mod:`imgkit.data.image_checks`),
the splits assigned and the files written (:mod:`imgkit.data.prep_splits`), the output
folder checked before and replaced whole after (:mod:`imgkit.data.prep_output`).
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from pathlib import Path

import numpy as np

from imgkit.data.bad_inputs import BadCounter
from imgkit.data.classmasks import class_table
from imgkit.data.dataset import Dataset, label_set
from imgkit.data.grouping import compile_group_by
from imgkit.data.images import DEFAULT_MAX_PIXELS
from imgkit.data.prep_gather import filter_records, read_sources, require_usable
from imgkit.data.prep_output import _check_output, _replace_folder, summarize
from imgkit.data.prep_splits import Split, split_and_write
from imgkit.data.records import Record
from imgkit.data.sources import Progress, SourceContext
from imgkit.errors import BadInputError
from imgkit.fileio import atomic_dir


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
        got = read_sources(sources, ctx, group_pattern)
        filter_records(got, workdir, counter, limit, seed, masks, progress, max_pixels, mask_table)
        records, rejects, notes = got.records, got.rejects, got.notes
        require_usable(records, rejects, sources, masks)

        split = Split(val, test, seed, folds, mask_table)
        records, info = split_and_write(workdir, output, got, sources, masks, split, limit)
        cached = _store_cache(workdir, got.arrays) if got.arrays else []

    if replacing:
        _replace_folder(staging, output)

    warnings = _warnings(records, info["task"] == "multilabel")
    return summarize(info, output, rejects, cached, notes + warnings)
