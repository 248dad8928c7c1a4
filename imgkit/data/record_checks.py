"""Checks on the records prep gathered, before any image is read: names a manifest
cannot hold, and files listed twice."""

from __future__ import annotations

import os
from pathlib import Path

from imgkit.data.records import Record, Reject

LINE_BREAKS = ("\r", "\n")


def shown_name(text: str) -> str:
    """``text`` with its line breaks written as ``\\r`` and ``\\n``: one rejects.csv row."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def refuse_line_breaks(records: list[Record]) -> tuple[list[Record], list[Reject]]:
    """Refuse images whose path, label, group or mask holds a line break.

    pandas writes a carriage return unquoted, so such a name would split its
    manifest.csv row in two (and a quoted line break still breaks every line-based
    tool that reads the CSVs downstream).
    """
    kept, rejects = [], []
    for r in records:
        fields = {"path": r.path, "label": r.label, "group": r.group, "mask": r.mask}
        broken = [k for k, v in fields.items() if v and any(c in v for c in LINE_BREAKS)]
        if broken:
            what = "name" if broken == ["path"] else " and ".join(broken)
            rejects.append(
                Reject(r.path, f"{what} contains a line break, which manifest.csv cannot hold")
            )
        else:
            kept.append(r)
    return kept, rejects


def dedupe(records: list[Record]) -> tuple[list[Record], list[Reject]]:
    """Keep the first listing of each file: a file twice in a dataset leaks across splits."""
    seen: dict[str, Record] = {}
    kept, rejects = [], []
    for r in records:
        key = os.path.realpath(r.path) if Path(r.path).is_absolute() else r.path
        first = seen.get(key)
        if first is None:
            seen[key] = r
            kept.append(r)
        elif first.label != r.label:
            rejects.append(
                Reject(
                    r.path, f"listed twice with different labels ({first.label!r} and {r.label!r})"
                )
            )
        else:
            rejects.append(Reject(r.path, "skipped: listed twice (the first listing was taken)"))
    return kept, rejects
