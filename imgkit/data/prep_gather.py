"""What prep takes from its sources: read, regrouped, deduplicated, paired, checked.

:func:`read_sources` reads every source into one :class:`Gathered`;
:func:`filter_records` then drops duplicates, applies ``--limit``, pairs masks and
opens every image not already checked, so that only usable records are left.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgkit.data.bad_inputs import BadCounter, reason_kind
from imgkit.data.grouping import regroup
from imgkit.data.image_checks import check_images
from imgkit.data.images import is_skipped
from imgkit.data.prep_options import PrepOptions
from imgkit.data.record_checks import dedupe, refuse_line_breaks
from imgkit.data.records import Record, Reject
from imgkit.data.sources import Progress, SourceContext, read_source, stratified_subset
from imgkit.errors import BadInputError


@dataclass
class Gathered:
    """What the sources gave: records, rejects, which records need no check, arrays."""

    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    trusted: set[str] = field(default_factory=set)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    details: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    task: str | None = None


def read_sources(sources: list[str], ctx: SourceContext, group_pattern) -> Gathered:
    """Read every source in order (regrouped by ``--group-by`` when given)."""
    got = Gathered()
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


def filter_records(
    got: Gathered,
    workdir: Path,
    counter: BadCounter,
    options: PrepOptions,
    progress: Progress | None,
    mask_table=None,
) -> None:
    """Drop duplicates, apply ``options.limit``, pair ``options.masks``, and open every
    unchecked image once."""
    got.records, duplicates = dedupe(got.records)
    got.rejects.extend(duplicates)
    got.records = limit_records(got.records, options.limit, options.seed)
    bad_so_far = [r for r in got.rejects if not is_skipped(r.reason)]
    counter.total = len(got.records) + len(bad_so_far)
    for r in bad_so_far:
        counter.add(r)
    if options.masks is not None:
        # Pairs are checked together (image and mask, and their sizes) right here.
        from imgkit.data.segprep import attach_masks

        got.records, bad_pairs, mask_notes = attach_masks(
            got.records, options.masks, workdir, mask_table
        )
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
    good, broken = check_images(unchecked, workdir, counter, progress, options.max_pixels)
    good_paths = {r.path for r in good}
    got.records = [r for r in got.records if r.path in got.trusted or r.path in good_paths]
    got.rejects.extend(broken)


def require_usable(records, rejects, sources: list[str], masks) -> None:
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


def limit_records(records: list[Record], limit: int | None, seed: int) -> list[Record]:
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
