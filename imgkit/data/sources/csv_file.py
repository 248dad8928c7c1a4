"""A CSV file listing images: ``path,label`` with optional ``group`` and ``split``.

A header row is required (so a first image is never taken for a header). Relative
paths are relative to the CSV's own folder, so the CSV can travel with its images.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imgkit.data.dataset import SPLITS
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import SourceContext, SourceResult, absolute
from imgkit.errors import BadInputError

NAME = "csv"
DESCRIPTION = "a CSV file with a header: path,label[,group][,split] (paths relative to the CSV)"

_SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val", "training": "train"}


def matches(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".csv", ".tsv")


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise BadInputError(f"{path}: no such CSV file")
    try:
        # utf-8-sig drops the byte-order mark Excel writes; dtype=str keeps labels like
        # "007" as written.
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            sep="\t" if path.suffix.lower() == ".tsv" else ",",
            skipinitialspace=True,
        )
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise BadInputError(f"{path}: cannot read the CSV ({e})") from None


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Read the listed images; bad rows become rejects with the reason."""
    csv_path = Path(spec)
    table = _read_table(csv_path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        found = ", ".join(table.columns) or "nothing"
        raise BadInputError(
            f"{csv_path}: needs a header row with path and label columns "
            f"(missing {', '.join(missing)}; the first row has {found})"
        )
    base = csv_path.resolve().parent
    records: list[Record] = []
    rejects: list[Reject] = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        raw = row["path"].strip()
        if not raw:
            rejects.append(Reject(f"{csv_path}:{line}", "empty path"))
            continue
        if "\0" in raw:
            rejects.append(Reject(f"{csv_path}:{line}", "path contains a NUL character"))
            continue
        path = absolute(base / raw)
        split = row.get("split", "").strip().lower() or None
        split = _SPLIT_ALIASES.get(split, split) if split else None
        if split is not None and split not in SPLITS:
            rejects.append(
                Reject(path, f"unknown split {row['split']!r} (use {', '.join(SPLITS)})")
            )
            continue
        label = row["label"].strip() or None
        if label is None and split != "unlabeled":
            rejects.append(Reject(path, f"empty label ({csv_path.name} line {line})"))
            continue
        group = row.get("group", "").strip() or None
        records.append(Record(path, label=label, group=group, split=split))
    return SourceResult(records, rejects, description=f"CSV {csv_path.resolve()}")
