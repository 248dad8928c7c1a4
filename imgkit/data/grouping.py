"""``prep --group-by REGEX``: group ids from file paths, for layouts no reader knows.

Images of one patient, one source photo or one session must stay in one split, or the
test set measures memory of the group instead of generalisation. Readers that know a
layout set groups themselves (the IDC reader: the patient folder); for any other
layout a regular expression on each file's path relative to its source names the
group: its first capture group, or the whole match when it has none.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from imgkit.data.records import Record
from imgkit.errors import BadInputError


def compile_group_by(pattern: str) -> re.Pattern:
    """Compile ``--group-by``; BadInputError with the regex error if it is not valid."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise BadInputError(f"--group-by {pattern!r} is not a valid regular expression: {e}") from e


def relative_name(path: str, source: str | Path, workdir: Path) -> str:
    """``path`` relative to its source folder (or the dataset folder, for extracted files)."""
    p = Path(path)
    for base in (Path(source), workdir):
        try:
            return p.relative_to(base.resolve()).as_posix() if p.is_absolute() else p.as_posix()
        except ValueError:
            continue
    return p.as_posix()


def regroup(
    records: list[Record], pattern: re.Pattern, source: str | Path, workdir: Path
) -> tuple[list[Record], int]:
    """Set each record's group from ``pattern`` (searched in its relative path).

    A record whose path does not match loses any group it had and becomes a group of
    its own (the safe default: it cannot leak, only fail to be kept together).

    Returns:
        (the records with new groups, how many did not match).
    """
    out, unmatched = [], 0
    for r in records:
        m = pattern.search(relative_name(r.path, source, workdir))
        if m is None:
            unmatched += 1
            out.append(replace(r, group=None))
        else:
            group = m.group(1) if pattern.groups and m.group(1) is not None else m.group(0)
            out.append(replace(r, group=group))
    return out, unmatched


def split_balance(records: list[Record]) -> dict:
    """dataset.json keys on what each split holds beyond its counts.

    ``class_fractions``: per split, each class's share (for two classes the second
    one's share is the positive fraction, e.g. ~0.28 for IDC), and, when images have
    groups, ``groups``: the number of groups per split.
    """
    by_split: dict[str, list[Record]] = {}
    for r in records:
        by_split.setdefault(r.split or "train", []).append(r)
    fractions = {}
    for split, rows in sorted(by_split.items()):
        labelled = [r.label for r in rows if r.label is not None]
        if labelled:
            names = sorted(set(labelled))
            fractions[split] = {c: round(labelled.count(c) / len(labelled), 4) for c in names}
    out: dict = {"class_fractions": fractions}
    if any(r.group is not None for r in records):
        out["groups"] = {
            split: len({r.group if r.group is not None else r.path for r in rows})
            for split, rows in sorted(by_split.items())
        }
    return out
