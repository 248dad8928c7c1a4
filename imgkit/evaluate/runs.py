"""Read finished training runs (model bundles) and put them side by side."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from imgkit.bundle import HISTORY_FILE, read_meta
from imgkit.errors import BadBundleError
from imgkit.fileio import write_csv

SUMMARY_COLUMNS = [
    "run",
    "model",
    "dropout",
    "epochs_run",
    "best_epoch",
    "final_loss",
    "final_accuracy",
    "final_val_loss",
    "final_val_accuracy",
    "best_loss",
    "best_accuracy",
    "best_val_loss",
    "best_val_accuracy",
    "test_accuracy",
    "path",
]


def load_history(run: str | os.PathLike) -> pd.DataFrame:
    """A bundle's history.csv (one row per epoch)."""
    path = Path(run) / HISTORY_FILE
    if not path.is_file():
        raise BadBundleError(f"{run}: {HISTORY_FILE} is missing")
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise BadBundleError(f"{path}: cannot read ({e})") from e


def _last(df: pd.DataFrame, col: str) -> float:
    return float(df[col].iloc[-1]) if col in df and len(df) else math.nan


def _extreme(df: pd.DataFrame, col: str, lowest: bool) -> float:
    if col not in df or df[col].isna().all():
        return math.nan
    return float(df[col].min() if lowest else df[col].max())


def summarize_run(name: str, run: str | os.PathLike, meta: dict, history: pd.DataFrame) -> dict:
    """One summary row: settings, final and best (lowest loss, highest accuracy) values."""
    test = (meta.get("metrics") or {}).get("test") or {}
    row = {
        "run": name,
        "model": meta.get("model"),
        "dropout": (meta.get("train_args") or {}).get("dropout"),
        "epochs_run": meta.get("epochs_run", len(history)),
        "best_epoch": meta.get("best_epoch"),
        "test_accuracy": test.get("accuracy", math.nan),
        "path": str(run),
    }
    for prefix in ("", "val_"):
        row[f"final_{prefix}loss"] = _last(history, f"{prefix}loss")
        row[f"final_{prefix}accuracy"] = _last(history, f"{prefix}accuracy")
        row[f"best_{prefix}loss"] = _extreme(history, f"{prefix}loss", lowest=True)
        row[f"best_{prefix}accuracy"] = _extreme(history, f"{prefix}accuracy", lowest=False)
    return row


def _names(runs: Sequence[Path]) -> list[str]:
    # Folder names read best; fall back to the paths as given when two runs share one.
    names = [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    return names


def compare_runs(runs: Sequence[str | os.PathLike], output: str | os.PathLike) -> pd.DataFrame:
    """Write ``output/curves.png`` and ``output/summary.csv`` for several runs.

    Args:
        runs: model bundle folders made by ``imgkit train``.
        output: the folder to write into (made if missing).

    Returns:
        The summary table, one row per run, columns ``SUMMARY_COLUMNS``.
    """
    from imgkit.evaluate.plots import plot_runs

    if not runs:
        raise BadBundleError("no runs to compare")
    paths = [Path(r) for r in runs]
    names = _names(paths)
    histories, rows = {}, []
    for name, path in zip(names, paths, strict=True):
        meta = read_meta(path)
        history = load_history(path)
        histories[name] = history
        rows.append(summarize_run(name, path, meta, history))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plot_runs(histories, out / "curves.png")
    write_csv(summary, out / "summary.csv")
    return summary
