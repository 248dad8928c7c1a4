"""The scores of a cross-validation: per fold, out of fold, and of the fold ensemble.

Classification: one temperature fitted on every out-of-fold (OOF) prediction (each
labelled image once, by the model that did not train on it), applied to the OOF rows
and to the ensemble's averaged probabilities; with a ``--threshold`` metric, a binary
ensemble's threshold is chosen on the tempered OOF probabilities the same way.
Multi-label: one shared temperature and per-label thresholds fitted on every OOF
prediction, as ``train`` fits them on val, applied once to the averaged probabilities.
Segmentation: per-image IoU, Dice and pixel accuracy of each fold model's masks on its
own fold, and of the averaged maps on the test split (at 0.5, no temperature).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from imgkit.bundle import calibration_meta
from imgkit.data.dataset import Dataset
from imgkit.data.masks import mask_scores, mean_scores
from imgkit.infer.predict import prediction_frame
from imgkit.train.calibration import fit_temperature, log_loss, temper
from imgkit.train.thresholds import apply_threshold, choose_threshold, parse_threshold

MASK_THRESHOLD = 0.5


def _paths(ds: Dataset, rows: pd.DataFrame) -> list[str]:
    # As predict writes a dataset's images: the dataset folder joined with the row's path.
    return [str(ds.abspath(p)) for p in rows["path"]]


def _labels(p: np.ndarray, threshold: float | None) -> np.ndarray:
    return apply_threshold(p[:, 1], threshold) if threshold is not None else p.argmax(axis=1)


def _scores(raw: np.ndarray, y: np.ndarray, temperature: float, threshold) -> dict:
    p = temper(raw, temperature)
    return {
        "log_loss": log_loss(p, y),
        "log_loss_uncalibrated": log_loss(raw, y),
        "accuracy": float((_labels(p, threshold) == y).mean()),
        "images": len(y),
    }


def _ensemble_threshold(threshold, p: np.ndarray, y: np.ndarray) -> tuple:
    """The ensemble's decision threshold, chosen on tempered OOF probabilities, and the
    metric that chose it; (None, None) when there is none."""
    metric, value = parse_threshold(threshold)
    if p.shape[1] != 2 or (metric is None and value is None):
        return None, None
    if value is not None:
        return float(value), "fixed"
    if len(np.unique(y)) < 2:
        return None, None
    chosen, _ = choose_threshold(p[:, 1], y, metric)
    return float(chosen), metric


def classification_scores(ds: Dataset, preds, classes, calibrate: bool, threshold) -> tuple:
    """OOF and test scores, the OOF rows (predict's columns) and the ensemble's keys.

    Returns:
        (scores {"oof": ..., "test": ...}, the OOF DataFrame, {temperature, threshold...}).
    """
    raw, y = preds.oof, preds.truth.astype(np.int64)
    temperature = fit_temperature(raw, y) if calibrate else 1.0
    p = temper(raw, temperature)
    chosen, metric = _ensemble_threshold(threshold, p, y)
    extra = calibration_meta(temperature, chosen, metric)
    chosen = extra.get("threshold")  # as recorded (rounded), so scores match predict's
    scores = {"oof": _scores(raw, y, temperature, chosen)}
    if preds.test:
        mean = np.mean(preds.test, axis=0)
        ty = preds.test_truth.astype(np.int64)
        scores["test"] = {
            **_scores(mean, ty, temperature, chosen),
            # Each fold model alone, tempered by the same OOF temperature: what the
            # averaging itself gains.
            "single_fold_log_loss": [log_loss(temper(t, temperature), ty) for t in preds.test],
        }
    frame = prediction_frame(_paths(ds, preds.rows), p, classes, chosen)
    return scores, frame, extra


def class_mask_scores(ds: Dataset, preds) -> tuple:
    """Multi-class masks: per-image OOF mean IoU and pixel accuracy, the pooled OOF and
    test (the folds' maps averaged) mean and per-class IoU."""
    from imgkit.data.classmasks import confusion, iou_summary

    names = ds.mask_classes
    k = len(names)
    total = np.zeros((k, k), dtype=np.int64)
    rows = []
    for m, t in zip(preds.oof, preds.truth, strict=True):
        matrix = confusion(np.argmax(m, axis=-1), t, k)
        total += matrix
        own = iou_summary(matrix, names)
        rows.append({"mean_iou": own["mean_iou"], "pixel_accuracy": own["pixel_accuracy"]})
    frame = pd.DataFrame(rows, columns=["mean_iou", "pixel_accuracy"])
    frame.insert(0, "fold", preds.rows["fold"].astype(int).to_numpy())
    frame.insert(0, "path", _paths(ds, preds.rows))
    scores = {"oof": {**iou_summary(total, names), "images": len(rows)}}
    if preds.test:
        mean = np.argmax(np.mean(preds.test, axis=0), axis=-1)
        scores["test"] = {
            **iou_summary(confusion(mean, preds.test_truth, k), names),
            "images": len(mean),
        }
    return scores, frame, {}


def segmentation_scores(ds: Dataset, preds) -> tuple:
    """Per-image OOF mask scores (a row per image) and the averaged maps' test scores."""
    if ds.mask_classes:
        return class_mask_scores(ds, preds)
    rows = [
        mask_scores(m > MASK_THRESHOLD, t.astype(bool))
        for m, t in zip(preds.oof, preds.truth, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["iou", "dice", "pixel_accuracy"])
    frame.insert(0, "fold", preds.rows["fold"].astype(int).to_numpy())
    frame.insert(0, "path", _paths(ds, preds.rows))
    scores = {"oof": {**mean_scores(rows), "images": len(rows)}}
    if preds.test:
        mean = np.mean(preds.test, axis=0) > MASK_THRESHOLD
        truth = preds.test_truth.astype(bool)
        scores["test"] = {
            **mean_scores(mask_scores(m, t) for m, t in zip(mean, truth, strict=True)),
            "images": len(truth),
        }
    return scores, frame, {}


def fold_table(metas: list[dict]) -> dict:
    """Each fold's val (and test) metrics, with their mean and sample standard deviation."""
    rows = []
    for k, meta in enumerate(metas, start=1):
        metrics = meta.get("metrics") or {}
        row = {"fold": k, "best_epoch": meta.get("best_epoch")}
        row["epochs_run"] = meta.get("epochs_run")
        for split in ("val", "test"):
            row.update({f"{split}_{m}": v for m, v in (metrics.get(split) or {}).items()})
        rows.append(row)
    keys = [k for k in rows[0] if k != "fold" and all(_number(r.get(k)) for r in rows)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0 for k in keys}
    return {"per_fold": rows, "mean": mean, "std": std}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def multilabel_scores(ds: Dataset, preds, classes, calibrate: bool, threshold) -> tuple:
    """Multi-label: one shared temperature and per-label thresholds fitted on every OOF
    prediction (as train fits them on val), the OOF and test scores with them, the OOF
    rows (predict's multi-label columns) and the ensemble's keys.

    Returns:
        (scores {"oof": ..., "test": ...}, the OOF DataFrame, {temperature, thresholds...}).
    """
    from imgkit.errors import BadInputError
    from imgkit.infer.predict import multilabel_frame
    from imgkit.train import multilabel_scores as mls

    raw, y = preds.oof, preds.truth.astype(np.int64)
    metric, value = parse_threshold(threshold)
    if metric == "balanced":
        raise BadInputError("--threshold balanced is for binary models; multi-label: f1, f2, P")
    if metric is None and value is None:
        metric = "f1"  # as train: each label's F1, here on the OOF predictions
    temperature = mls.fit_shared_temperature(raw, y) if calibrate else 1.0
    p = mls.temper(raw, temperature)
    # Rounded as recorded, so the scores are those predict's decisions give.
    thresholds = np.round(mls.fit_thresholds(p, y, metric, value), 6)
    extra = {
        **calibration_meta(temperature),
        "thresholds": {c: float(t) for c, t in zip(classes, thresholds, strict=True)},
        "threshold_metric": metric or "fixed",
    }
    scores = {"oof": mls.scores(p, y, thresholds, classes)}
    if preds.test:
        ty = preds.test_truth
        mean = mls.temper(np.mean(preds.test, axis=0), temperature)
        scores["test"] = {
            **mls.scores(mean, ty, thresholds, classes),
            # Each fold model alone, with the same temperature and thresholds: what the
            # averaging itself gains.
            "single_fold_mean_f2": [
                mls.scores(mls.temper(t, temperature), ty, thresholds, classes)["mean_f2"]
                for t in preds.test
            ],
        }
    frame = multilabel_frame(_paths(ds, preds.rows), p, classes, thresholds)
    return scores, frame, extra
