"""Hyper-parameter search: a grid (or a random sample of it) of ``train`` runs.

Each trial is an ordinary :func:`imgkit.train.trainer.train` run into ``TUNE/trial-NNN``,
so every trial is a complete bundle that predict, eval and compare read. Trials are
ranked on a validation metric; ``TUNE/trials.csv`` (rewritten as each trial finishes)
holds every trial's settings and metrics, and the best bundle is copied to
``TUNE/best`` (atomically: a new copy is renamed into place).

Why not KerasTuner: it is not installed here, and it owns the training loop (its own
trial folders and checkpoints, a model-building function instead of the registry),
so its trials would not be imgkit bundles with calibration, thresholds and resume.
The search spaces this toolkit needs (a few learning rates, dropouts, how much to
fine-tune) are small grids; a plain loop over ``train`` is simpler and keeps them.
A re-run with the same settings skips the trials already complete.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgkit.bundle import BUNDLE_META, recorded_calibration
from imgkit.errors import BadInputError, ImgkitError
from imgkit.fileio import write_csv, write_text

if TYPE_CHECKING:
    import pandas as pd

TRIALS_FILE = "trials.csv"
BEST_DIR = "best"
PARAMS_FILE = "tune_params.json"
# metric name -> (where in imgkit.json metrics["val"], higher is better)
METRICS = {
    "log_loss": ("log_loss", False),
    "loss": ("loss", False),
    "accuracy": ("accuracy", True),
    "f1": ("f1_at_threshold", True),
    "balanced": ("balanced_accuracy_at_threshold", True),
}
# Grid keys that are not train() settings but the names users know them by.
ALIASES = {"fine_tune": "fine_tune_last", "dense_units": "head_units"}
# train() arguments a grid may not vary: where the run goes and how it reports.


def _value(text: str):
    """A grid value as the most specific type: int, float, or the string itself."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def searchable() -> list[str]:
    """The settings a grid may vary: every run setting but the model, plus the threshold."""
    from imgkit.train.settings import setting_names

    return sorted({*setting_names(), "threshold", "cache_features"} - {"model"})


def parse_grid(items: list[str]) -> dict[str, list]:
    """Read ``--grid KEY=V1,V2`` options into {setting: [values]} (order kept).

    Raises:
        BadInputError: malformed item, a repeated key, or a key train() does not take.
    """
    grid: dict[str, list] = {}
    allowed = searchable()
    for item in items:
        key, sep, values = item.partition("=")
        key = ALIASES.get(key.strip().replace("-", "_"), key.strip().replace("-", "_"))
        if not sep or not key or not values.strip():
            raise BadInputError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. lr=1e-3,1e-4)")
        if key not in allowed:
            raise BadInputError(f"--grid {item!r}: unknown setting (one of {', '.join(allowed)})")
        if key in grid:
            raise BadInputError(f"--grid {key} given twice; list all its values in one option")
        grid[key] = [_value(v) for v in values.split(",") if v.strip()]
    return grid


def trial_settings(
    grid: dict[str, list], trials: int | None = None, random: bool = False, seed: int = 0
) -> list[dict]:
    """The settings of each trial: the whole grid in order, or ``trials`` of it.

    With ``random`` a seeded sample of ``trials`` distinct combinations, else the first
    ``trials`` of the grid (all when None).
    """
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]
    if random and trials is not None and trials < len(combos):
        pick = np.random.default_rng(seed).choice(len(combos), size=trials, replace=False)
        return [combos[i] for i in sorted(pick)]
    return combos[:trials] if trials is not None else combos


def _score(meta: dict, metric: str) -> float:
    key, _ = METRICS[metric]
    value = meta.get("metrics", {}).get("val", {}).get(key)
    return float(value) if value is not None else float("nan")


def _flat_metrics(meta: dict) -> dict:
    out = {}
    for split, values in meta.get("metrics", {}).items():
        for k, v in values.items():
            out[f"{split}_{k}"] = v
    for key in ("epochs_run", "best_epoch"):
        if key in meta:
            out[key] = meta[key]
    out.update(recorded_calibration(meta))
    return out


def _copy_best(src: Path, root: Path) -> None:
    """Copy the bundle ``src`` to ``root/best``, replacing the old copy only once complete."""
    tmp = root / f".{BEST_DIR}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    old = root / f".{BEST_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if (root / BEST_DIR).exists():
        os.replace(root / BEST_DIR, old)
    os.replace(tmp, root / BEST_DIR)
    shutil.rmtree(old, ignore_errors=True)


def tune(
    dataset_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str,
    grid: dict[str, list],
    metric: str = "log_loss",
    trials: int | None = None,
    random: bool = False,
    seed: int = 0,
    train_args: dict | None = None,
    on_trial: Callable[[dict], None] | None = None,
    on_info: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train one bundle per grid point, rank them on ``metric``, copy the best.

    Args:
        dataset_dir: a classification dataset folder with a val split.
        output: the tuning folder (made if needed; completed trials are kept and skipped).
        model: the registry name every trial trains.
        grid: {train() setting: [values]} (see :func:`parse_grid`).
        metric: "log_loss" (default), "loss", "accuracy", "f1" or "balanced", on val.
            f1 and balanced are measured at the trial's decision threshold (chosen on
            val for that metric unless ``train_args`` fixes ``threshold``).
        trials: at most this many trials (default: the whole grid).
        random: sample ``trials`` of the grid at random (with ``seed``).
        seed: the random sample's seed (the trials' own seed is a train setting).
        train_args: fixed settings for every trial (epochs, weights, class_weight, ...).
        on_trial: called with each finished trial's row.
        on_info: one-line messages (passed on to train).

    Returns:
        The trials table (also written to ``output/trials.csv``), best first.

    Raises:
        BadInputError: unknown metric, an empty grid, a grid key also fixed, or no trial
            finished.
    """
    from imgkit.train.trainer import train

    if metric not in METRICS:
        raise BadInputError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    fixed = dict(train_args or {})
    clash = sorted(set(fixed) & set(grid))
    if clash:
        raise BadInputError(f"{', '.join(clash)} is both fixed and in the grid; give it once")
    if metric in ("f1", "balanced") and fixed.get("threshold") is None and "threshold" not in grid:
        fixed["threshold"] = metric
    settings = trial_settings(grid, trials, random, seed)
    if not settings:
        raise BadInputError("the grid is empty: give at least one --grid KEY=V1,V2")
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    higher = METRICS[metric][1]
    rows: list[dict] = []
    for i, params in enumerate(settings, start=1):
        folder = root / f"trial-{i:03d}"
        wanted = {"model": model, **fixed, **params}
        row = {"trial": f"trial-{i:03d}", **params}
        started = time.perf_counter()
        try:
            meta = _existing(folder, wanted)
            if meta is None:
                meta = train(dataset_dir, folder, overwrite=True, on_info=on_info, **wanted)
                write_text(folder / PARAMS_FILE, json.dumps(wanted, sort_keys=True) + "\n")
            row.update(status="ok", score=_score(meta, metric), **_flat_metrics(meta))
        except ImgkitError as e:
            row.update(status=f"failed: {e}", score=float("nan"))
        row["seconds"] = round(time.perf_counter() - started, 1)
        row["path"] = str(folder)
        rows.append(row)
        table = _ranked(rows, higher)
        write_csv(table, root / TRIALS_FILE)
        if table.iloc[0]["trial"] == row["trial"] and row["status"] == "ok":
            _copy_best(folder, root)
        if on_trial is not None:
            on_trial(row)
    table = _ranked(rows, higher)
    if not (table["status"] == "ok").any():
        raise BadInputError(f"no trial finished; see {root / TRIALS_FILE}")
    return table


def _existing(folder: Path, wanted: dict) -> dict | None:
    """A trial's imgkit.json when it is complete and was run with the same settings."""
    try:
        saved = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
        meta = json.loads((folder / BUNDLE_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if saved == json.loads(json.dumps(wanted, sort_keys=True)) else None


def _ranked(rows: list[dict], higher: bool) -> pd.DataFrame:
    import pandas as pd  # here: `imgkit tune --help` reads METRICS without pandas

    """Trials best first (failed and unscored last), a ``rank`` column in front."""
    table = pd.DataFrame(rows)
    table = table.sort_values(
        "score", ascending=not higher, na_position="last", kind="stable"
    ).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table
