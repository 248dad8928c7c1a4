"""The audit's outputs: issues.csv, summary.json, rejects.csv and the contact sheets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from imgkit.fileio import write_csv, write_text

COLUMNS = ["path", "issue", "score", "other", "split", "other_split"]
KINDS = ("duplicate", "imbalance", "label", "leak", "near_duplicate", "outlier")


def issues_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as issues.csv orders them: by issue, then score (worst first), then path."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    df["score"] = df["score"].astype(float)
    return df.sort_values(
        ["issue", "score", "path"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)


def counts(df: pd.DataFrame) -> tuple[dict, dict]:
    """Findings per issue kind (every kind, zeros included) and per kind and split."""
    total = {k: int((df["issue"] == k).sum()) for k in KINDS}
    by_split: dict[str, dict[str, int]] = {}
    for k in KINDS:
        part = df[df["issue"] == k]
        if not part.empty:
            c = part["split"].replace("", "all").value_counts()
            by_split[k] = {str(s): int(v) for s, v in sorted(c.items())}
    return total, by_split


def write_outputs(
    out: Path,
    df: pd.DataFrame,
    summary: dict,
    rejects: list[tuple[str, str]],
    locate: Callable[[str], str | None],
    given: dict[str, str],
    finish: Callable[[dict], None] | None = None,
) -> dict:
    """Write everything into ``out`` (each file atomically); return the summary.

    ``finish`` is called with the summary just before summary.json is written.
    """
    from imgkit.evaluate.audit.sheets import contact_sheet

    out.mkdir(parents=True, exist_ok=True)
    write_csv(df, out / "issues.csv")
    write_csv(pd.DataFrame(rejects, columns=["path", "reason"]), out / "rejects.csv")
    sheets = []
    for kind in KINDS:
        part = df[df["issue"] == kind]
        if part.empty or kind == "imbalance":
            continue
        if kind == "label":
            part = part.assign(given=[given.get(p, "") for p in part["path"]])
        contact_sheet(kind, part, out / f"{kind}.png", locate)
        sheets.append(f"{kind}.png")
    summary["sheets"] = sheets
    if finish is not None:
        finish(summary)
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
