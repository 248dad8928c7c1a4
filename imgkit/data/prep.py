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
from imgkit.data.classfiles import class_table
from imgkit.data.dataset import Dataset, label_set
from imgkit.data.grouping import compile_group_by
from imgkit.data.prep_gather import filter_records, read_sources, require_usable
from imgkit.data.prep_options import PrepOptions
from imgkit.data.prep_output import _check_output, _replace_folder, summarize
from imgkit.data.prep_splits import split_and_write
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


def _check_arguments(sources: list[str], options: PrepOptions) -> None:
    """Refuse what no source can make right, before anything is read."""
    if not sources:
        raise BadInputError("no sources given (folders, CSV files or fashion-mnist)")
    if options.limit is not None and options.limit < 1:
        raise BadInputError(f"--limit must be at least 1, got {options.limit}")
    if options.folds is not None and options.val:
        raise BadInputError("--folds and --val: each fold is in turn the validation; drop --val")


def _source_context(workdir: Path, options: PrepOptions, progress) -> SourceContext:
    """What every source reader is told: the options that concern reading."""
    return SourceContext(
        workdir=workdir,
        idx_dir=Path(options.idx_dir) if options.idx_dir else None,
        limit=options.limit,
        seed=options.seed,
        progress=progress,
        name_labels=options.name_labels,
        label_sep=options.label_sep or " ",
        images=Path(options.images) if options.images else None,
        allow_empty=options.allow_empty,
    )


def prepare(
    sources: list[str],
    output: str | os.PathLike,
    options: PrepOptions | None = None,
    *,
    progress: Progress | None = None,
) -> dict:
    """Read image sources, check every image, assign splits, write a dataset folder.

    Args:
        sources: folders, CSV files, zip/tar archives, IDX folders or "fashion-mnist"
            (see :mod:`imgkit.data.sources`).
        output: the dataset folder to make.
        options: how (:class:`~imgkit.data.prep_options.PrepOptions`, each field
            documented there); None: ``imgkit prep``'s defaults.
        progress: called as ``progress(task, advance, total)``.

    Returns:
        The dataset.json content, plus ``path``, ``rejects_file``, ``bad`` (count),
        ``skipped`` (count), ``reject_reasons`` ([(reason, count)], most common first),
        ``cached_splits`` and ``warnings``.

    Raises:
        OutputExistsError: ``output`` exists and ``options.overwrite`` is off.
        BadInputError: a source cannot be read, or no usable image is left.
        OfflineError: fashion-mnist is not here and cannot be downloaded.
        ImgkitError: more bad images than ``options.max_bad``.
    """
    options = options if options is not None else PrepOptions()
    sources = [str(s) for s in sources]
    _check_arguments(sources, options)
    output = Path(output)
    counter = BadCounter(options.max_bad)  # parses max_bad before any work
    group_pattern = compile_group_by(options.group_by) if options.group_by else None
    mask_table = class_table(
        options.masks, options.mask_classes, options.mask_colors, options.mask_ignore
    )
    _check_output(output, sources, options.overwrite)
    replacing = output.exists()
    staging = (
        output.with_name(f".{output.name}.new-{secrets.token_hex(4)}") if replacing else output
    )

    with atomic_dir(staging) as workdir:
        got = read_sources(sources, _source_context(workdir, options, progress), group_pattern)
        filter_records(got, workdir, counter, options, progress, mask_table)
        records, rejects, notes = got.records, got.rejects, got.notes
        require_usable(records, rejects, sources, options.masks)
        records, info = split_and_write(workdir, output, got, sources, options, mask_table)
        cached = _store_cache(workdir, got.arrays) if got.arrays else []

    if replacing:
        _replace_folder(staging, output)

    warnings = _warnings(records, info["task"] == "multilabel")
    return summarize(info, output, rejects, cached, notes + warnings)
