"""A multi-label CSV of one 0/1 column per label: ``path,cat,dog,person``.

The form many exports take (a spreadsheet of ticks, NIH's and CheXpert's findings):
a ``path`` (or Planet's ``image_name``, with ``--images DIR``) column, optionally
``group``, and every other column a label whose cells are 0 or 1. It is
recognised by its header (a path column, no ``label``, ``labels`` or ``tags``
column, at least one other) and by a row among the first 50 whose label cells are
all 0 or 1; anything else is left to the other CSV readers, whose messages then apply. A later
row with another value in a label column goes to rejects.csv with the reason, as do
missing images and, unless ``--allow-empty``, rows with no 1.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imgkit.data.records import Reject
from imgkit.data.sources.base import SourceContext, SourceResult
from imgkit.data.sources.csv_file import _read_table
from imgkit.data.sources.multilabel_csv import _LABEL_COLUMNS, _PATH_COLUMNS, Rows

NAME = "multilabel-columns"
DESCRIPTION = "a multi-label CSV of one 0/1 column per label: path,cat,dog,person"
_OTHER = ("group",)  # not a label, whatever it holds
_PEEK = 50  # rows looked at to recognise the layout
_VALUES = {"0": False, "1": True}


def _label_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in _PATH_COLUMNS and c not in _OTHER]


def matches(spec: str) -> bool:
    path = Path(spec)
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return False
    try:
        head = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=_PEEK,
                           encoding="utf-8-sig", skipinitialspace=True,
                           sep="\t" if path.suffix.lower() == ".tsv" else ",")  # fmt: skip
    except (ValueError, OSError, pd.errors.ParserError):
        return False
    columns = [str(c).strip().lower() for c in head.columns]
    if not any(c in columns for c in _PATH_COLUMNS) or any(
        c in columns for c in (*_LABEL_COLUMNS, "label")
    ):
        return False
    labels = _label_columns(columns)
    if not labels:
        return False
    cells = head.iloc[:, [columns.index(c) for c in labels]].to_numpy()
    # One row of only 0/1 cells is enough: a typo in the first rows should be that
    # row's reject, not a different reader's complaint about the whole file.
    return any(all(str(v).strip() in _VALUES for v in row) for row in cells)


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Read the listed images; each row's labels are the columns holding 1."""
    csv_path = Path(spec)
    table = _read_table(csv_path)
    columns = [str(c).strip() for c in table.columns]
    lowered = [c.lower() for c in columns]
    path_col = table.columns[next(i for i, c in enumerate(lowered) if c in _PATH_COLUMNS)]
    group_col = table.columns[lowered.index("group")] if "group" in lowered else None
    # Label names as written in the header (case kept: they are the class names).
    labels = [(table.columns[i], columns[i]) for i, c in enumerate(lowered)
              if c not in _PATH_COLUMNS and c not in _OTHER]  # fmt: skip
    rows = Rows(csv_path, "image_name" if str(path_col).lower() == "image_name" else "path", ctx)
    for line, row in enumerate(table.to_dict("records"), start=2):
        bad = [name for col, name in labels if str(row[col]).strip() not in _VALUES]
        if bad:
            value = row[next(col for col, name in labels if name == bad[0])]
            where = f"{csv_path.name} line {line}"
            reason = f"column {bad[0]!r} holds {value!r}, not 0 or 1 ({where})"
            rows.rejects.append(Reject(str(row[path_col]), reason))
            continue
        chosen = [name for col, name in labels if _VALUES[str(row[col]).strip()]]
        rows.add(line, row[path_col], sorted(chosen), row.get(group_col) if group_col else None)
    return rows.result("multi-label CSV of 0/1 columns")
