"""K-fold cross-validation: K ordinary runs, their out-of-fold predictions, one ensemble.

:func:`cross_validate` trains fold k (``train --fold k``) into ``CV/fold-k`` for each
k in turn, then scores every image of the folds with the one fold model that did not
train on it (the out-of-fold, OOF, predictions) and writes::

    CV/
      data/         only when DATA had no folds: DATA's images given K folds
      fold-1/ ...   one complete bundle per fold
      oof.csv       predict's columns, each image by the model that never saw it
      cv.json       each fold's metrics, their mean and spread, the OOF and test scores
      curves.png    every fold's curves
      imgkit.json   the folder as one bundle: the K models averaged (written last)

It resumes: a finished fold is checked (same dataset, fold and given settings) and
kept, an interrupted one continues from its checkpoint, so a run killed at any point
and started again ends with the same files. The predictions are always computed again
from the fold bundles (a few seconds of inference), never cached, so they can never
belong to an older model.

The ensemble averages the fold models' raw probabilities; one temperature, fitted on
all the OOF predictions (every labelled image once), is applied to the average. The
OOF predictions in oof.csv carry that temperature too. A multi-label ensemble's
per-label thresholds are fitted on the tempered OOF predictions as well, as train
fits a single model's on val.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.bundle import BUNDLE_META, CHECKPOINT_DIR, load_bundle, read_meta, save_meta
from imgkit.data.dataset import Dataset
from imgkit.data.derive import Derivation, derive
from imgkit.data.folds import fold_count, fold_view
from imgkit.errors import BadDatasetError, BadInputError, OutputExistsError
from imgkit.fileio import atomic_open, write_text
from imgkit.infer.predict import frame_to_csv

OOF_FILE = "oof.csv"
CV_FILE = "cv.json"
CURVES_FILE = "curves.png"
DATA_DIR = "data"
# What the ensemble's imgkit.json copies from its first fold: how its model reads images.
_FROM_FOLD = ("task", "model", "classes", "input_size", "channels", "resize", "pixels",
              "polarity", "output", "mask_colors", "mask_ignore")  # fmt: skip


def fold_dir(output: str | os.PathLike, k: int) -> Path:
    """Where fold ``k``'s bundle goes in a CV folder."""
    return Path(output) / f"fold-{k}"


@dataclass
class CvHooks:
    """Where a CV run's progress goes: each fold's start and its training callbacks."""

    on_fold: Callable[[int, int, str], None] = lambda k, n, state: None
    on_info: Callable[[str], None] = lambda msg: None
    train: dict = field(default_factory=dict)  # on_epoch, on_batch, callbacks_extra


def cross_validate(
    dataset_dir: str | os.PathLike,
    output: str | os.PathLike,
    folds: int | None = None,
    *,
    threshold: str | float | None = None,
    overwrite: bool = False,
    trust: bool | None = None,
    hooks: CvHooks | None = None,
    **given,
) -> dict:
    """Train and score K folds of ``dataset_dir`` into ``output`` (see the module).

    Args:
        dataset_dir: a dataset folder, with folds (``prep --folds``) or without: then
            ``folds`` is required and ``output/data`` gets DATA's images in K folds
            (seeded by ``seed``).
        output: the CV folder; an unfinished one is resumed.
        folds: K; None takes the dataset's; else it must match the dataset's folds.
        threshold: as ``imgkit train --threshold``, for every fold; the ensemble's is
            chosen the same way on the OOF predictions.
        overwrite: start again from nothing in ``output``.
        trust: as for :func:`imgkit.train.train`.
        hooks: progress callbacks.
        **given: training settings (``imgkit train``'s), the same for every fold.

    Returns:
        cv.json's content.

    Raises:
        BadDatasetError: no folds and no ``folds``, or other folds than ``folds``.
        BadInputError: a finished fold trained with other settings, or on other data.
    """
    hooks = hooks or CvHooks()
    out = Path(output)
    if "fold" in given and given["fold"] is not None:
        raise BadInputError("imgkit cv trains every fold; --fold is for imgkit train")
    given.pop("fold", None)
    _prepare(out, overwrite)
    data, k_folds = _folded_dataset(Path(dataset_dir), out, folds, given.get("seed") or 0)
    for k in range(1, k_folds + 1):
        _train_fold(data, out, k, k_folds, dict(given, threshold=threshold, trust=trust), hooks)
    return _assemble(data, out, k_folds, threshold, hooks.on_info)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        is_cv = any((out / n).exists() for n in (CV_FILE, DATA_DIR)) or any(out.glob("fold-*"))
        if not is_cv:
            raise OutputExistsError(
                f"{out}: exists and is not a cross-validation folder; choose a new or empty one"
            )
        if overwrite:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _folded_dataset(source: Path, out: Path, folds: int | None, seed: int) -> tuple[Path, int]:
    """The dataset the folds train on, and K: DATA itself, or DATA given folds in CV/data."""
    ds = Dataset.load(source)
    have = fold_count(ds)
    if have:
        if folds is not None and folds != have:
            raise BadDatasetError(
                f"{source} has {have} folds, not --folds {folds} (make others with "
                f"`imgkit prep {source} --folds {folds} -o NEW`)"
            )
        return source, have
    if folds is None:
        raise BadDatasetError(
            f"{source}: the dataset has no folds; give --folds K (or make them with "
            f"`imgkit prep {source} --folds K -o NEW`)"
        )
    made = out / DATA_DIR
    if made.is_dir():
        kept = Dataset.load(made)
        if fold_count(kept) == folds and kept.info.get("derived_from") == [str(source)]:
            return made, folds
        raise BadInputError(
            f"{made}: holds other folds than --folds {folds} of {source} (use --overwrite)"
        )
    derive(source, made, Derivation(folds=folds, seed=seed))
    return made, folds


def _train_fold(data: Path, out: Path, k: int, n: int, args: dict, hooks: CvHooks) -> None:
    """Train fold ``k`` unless it is finished; continue it if it was interrupted."""
    from imgkit.train.settings import RunSettings
    from imgkit.train.trainer import train

    where = fold_dir(out, k)
    settings = {key: v for key, v in args.items() if key not in ("threshold", "trust")}
    if (where / BUNDLE_META).is_file():
        meta = read_meta(where)
        expected = fold_view(Dataset.load(data), k).hash
        if (meta.get("dataset") or {}).get("hash") != expected:
            raise BadInputError(
                f"{where}: trained on another dataset or fold than fold {k} of {data} "
                "(use --overwrite to train the folds again)"
            )
        lead = f"{where} is a finished fold, kept as it was trained"
        RunSettings.from_saved(meta.get("train_args") or {}).check_resume(settings, lead)
        hooks.on_fold(k, n, "finished")
        return
    resume = (where / CHECKPOINT_DIR).is_dir()
    hooks.on_fold(k, n, "resumed" if resume else "training")
    train(data, where, **settings, fold=k, resume=resume, overwrite=not resume,
          threshold=args.get("threshold"), trust=args.get("trust"), on_info=hooks.on_info,
          **hooks.train)  # fmt: skip


# --- the folds' predictions ------------------------------------------------------------


def _outputs(bundle, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's raw outputs for ``x``: (n, k) probabilities or (n, h, w) maps
    ((n, h, w, k) for multi-class masks)."""
    from imgkit.infer.predict import to_probabilities

    parts = []
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], dtype=np.float32)
        parts.append(np.asarray(bundle.model.predict_on_batch(batch), np.float64))
    raw = np.concatenate(parts) if parts else np.zeros((0, 1))
    if bundle.task == "segmentation":
        # One channel: P(object) maps; several (multi-class masks): a map per class.
        return raw[..., 0] if raw.shape[-1] == 1 else raw
    return to_probabilities(raw, bundle.output, len(bundle.classes))


@dataclass
class _Predictions:
    """The folds' outputs: OOF rows (manifest order), and each fold's on the test split."""

    rows: pd.DataFrame  # the folded rows, in manifest order, with their fold
    oof: np.ndarray  # one output per row, by the model that did not train on it
    truth: np.ndarray  # class indices, or masks
    test: list[np.ndarray] = field(default_factory=list)
    test_truth: np.ndarray | None = None


def _predict_folds(data: Path, out: Path, n: int) -> tuple[_Predictions, list]:
    # Keras warns of retracing when K models each predict: expected here, not news.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    ds = Dataset.load(data)
    bundles = [load_bundle(fold_dir(out, k)) for k in range(1, n + 1)]
    first = bundles[0]
    shape = (first.input_size, first.channels, first.resize)
    segment = first.task == "segmentation"
    multi = first.task == "multilabel"
    train_rows = ds.manifest[ds.manifest["split"] == "train"]
    folded = train_rows[train_rows["fold"] != ""].copy()
    oof, truth = None, None
    for k, bundle in enumerate(bundles, start=1):
        view = fold_view(ds, k)
        got = _outputs(bundle, view.arrays("val", *shape))
        where = np.flatnonzero((folded["fold"] == str(k)).to_numpy())
        if segment:
            labels = view.mask_arrays("val", first.input_size)[..., 0]
        elif multi:
            labels = view.label_matrix("val")
        else:
            labels = view.labels("val")
        if oof is None:
            oof = np.zeros((len(folded), *got.shape[1:]))
            truth = np.zeros((len(folded), *np.shape(labels)[1:]), dtype=np.int64)
        oof[where], truth[where] = got, labels
    preds = _Predictions(folded, oof, truth)
    if "test" in ds.splits():
        x = ds.arrays("test", *shape)
        preds.test = [_outputs(b, x) for b in bundles]
        if segment:
            preds.test_truth = np.asarray(ds.mask_arrays("test", first.input_size))[..., 0]
        else:
            preds.test_truth = ds.label_matrix("test") if multi else ds.labels("test")
    return preds, bundles


# --- assembling ------------------------------------------------------------------------


def _assemble(data: Path, out: Path, n: int, threshold, say) -> dict:
    from imgkit.evaluate.crossval_scores import (
        classification_scores,
        fold_table,
        multilabel_scores,
        segmentation_scores,
    )

    preds, bundles = _predict_folds(data, out, n)
    ds = Dataset.load(data)
    metas = [b.meta for b in bundles]
    calibrate = bool(metas[0].get("train_args", {}).get("calibrate", True))
    if bundles[0].task == "segmentation":
        scores, oof_frame, extra = segmentation_scores(ds, preds)
    elif bundles[0].task == "multilabel":
        scores, oof_frame, extra = multilabel_scores(
            ds, preds, bundles[0].classes, calibrate, threshold
        )
    else:
        scores, oof_frame, extra = classification_scores(
            ds, preds, bundles[0].classes, calibrate, threshold
        )
    with atomic_open(out / OOF_FILE, "w", encoding="utf-8", newline="") as f:
        f.write(frame_to_csv(oof_frame, header=True))
    report = {
        "folds": n,
        "dataset": {"path": str(ds.root.resolve()), "hash": ds.hash},
        "train_args": {k: v for k, v in metas[0]["train_args"].items() if k != "fold"},
        **fold_table(metas),
        **scores,
        **extra,
    }
    write_text(out / CV_FILE, json.dumps(report, indent=2) + "\n")
    _plot(out, n)
    _write_ensemble_meta(out, ds, metas, report, extra)
    say(f"out-of-fold predictions of {len(oof_frame)} images: {out / OOF_FILE}")
    return report


def _plot(out: Path, n: int) -> None:
    from imgkit.evaluate.plots import plot_runs
    from imgkit.evaluate.runs import load_history

    plot_runs({f"fold {k}": load_history(fold_dir(out, k)) for k in range(1, n + 1)},
              out / CURVES_FILE)  # fmt: skip


def _write_ensemble_meta(out: Path, ds: Dataset, metas: list[dict], report: dict, extra) -> None:
    """imgkit.json last: the CV folder is then a complete bundle, the folds averaged."""
    first = metas[0]
    meta = {key: first[key] for key in _FROM_FOLD if key in first}
    meta.update(
        ensemble={"members": [f"fold-{k}" for k in range(1, len(metas) + 1)], "kind": "folds"},
        train_args=report["train_args"],
        dataset={"path": str(ds.root.resolve()), "hash": ds.hash, "folds": len(metas)},
        metrics={key: report[key] for key in ("oof", "test") if key in report},
    )
    meta.update(extra)  # the ensemble's calibration, from calibration_meta
    save_meta(out, meta)
