"""Multi-label arithmetic: per-label thresholds, the shared temperature, and the scores.

A multi-label model gives one independent probability per label. A label is predicted
when its probability reaches that label's threshold, fitted on the val split for the
metric the user names (F1 by default, F2 where recall counts double, as Planet's
contest scored). Scores: micro and macro F1 and F2 at those thresholds, mean average
precision (threshold-free ranking quality, averaged over labels with a positive), and
each label's ROC AUC. Pure numpy, shared by training, prediction and ``imgkit eval``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imgkit.errors import BadInputError

EPS = 1e-7


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Each probability's logit divided by ``temperature``: sigmoid(logit(p) / T)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    if temperature == 1:
        return np.asarray(proba, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def fit_shared_temperature(proba: np.ndarray, truth: np.ndarray) -> float:
    """One temperature for all labels, minimising the mean binary log loss on val.

    Every (image, label) pair is a binary case of the same model; one parameter fitted
    on all of them cannot overfit a rare label's few val positives the way one per
    label would, and the per-label thresholds already absorb each label's own offset.
    """
    from imgkit.train.calibration import fit_temperature

    return fit_temperature(np.asarray(proba).reshape(-1), np.asarray(truth).reshape(-1))


def _fbeta(tp, fp, fn, beta: float):
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * fn + fp
    return np.where(den > 0, (1 + b2) * tp / np.maximum(den, 1e-12), 0.0)


def best_threshold(p: np.ndarray, y: np.ndarray, beta: float) -> float:
    """The threshold on one label's probabilities that maximises its F-beta on ``y``.

    Candidates are the probabilities themselves (predicting every image at or above
    one); the chosen threshold is midway to the next lower probability, so an image
    scored just below the cut on other data is not an accident of the val set. 0.5
    when the label has no positive here (nothing to fit).
    """
    y = np.asarray(y).astype(bool)
    if not y.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    fn = ys.sum() - tp
    score = _fbeta(tp, fp, fn, beta)
    # Only the last of equal probabilities is a cut point.
    last = np.append(ps[1:] != ps[:-1], True)
    k = int(np.argmax(np.where(last, score, -1)))
    below = ps[k + 1] if k + 1 < len(ps) else 0.0
    return float(min(max((ps[k] + below) / 2, EPS), 1 - EPS))


def fit_thresholds(proba: np.ndarray, truth: np.ndarray, metric: str | None, value=None):
    """Per-label thresholds: ``metric`` "f1" or "f2" fitted on val, or ``value`` for all.

    Returns:
        (n_labels,) thresholds.
    """
    n = proba.shape[1]
    if metric is None:
        return np.full(n, 0.5 if value is None else float(value))
    if metric not in ("f1", "f2"):
        raise BadInputError(f"--threshold {metric} is for binary models; multi-label: f1, f2, P")
    beta = 2.0 if metric == "f2" else 1.0
    return np.array([best_threshold(proba[:, j], truth[:, j], beta) for j in range(n)])


def average_precision(p: np.ndarray, y: np.ndarray) -> float | None:
    """Area under one label's precision-recall steps (None without a positive)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return None
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    hits = np.cumsum(ys)
    precision = hits / np.arange(1, len(ys) + 1)
    return float(precision[ys].sum() / ys.sum())


def roc_auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """One label's ROC AUC by ranks, ties shared (None when only one class is present)."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(p, kind="stable")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # Average ranks over ties.
    start = 0
    for end in range(1, len(p) + 1):
        if end == len(p) or sorted_p[end] != sorted_p[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _round(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


# What ``imgkit eval --fail-under`` takes for multi-label predictions.
GATE_METRICS = ("micro_f1", "macro_f1", "micro_f2", "macro_f2", "mean_f2", "mAP", "exact_match")


def scores(
    proba: np.ndarray,
    truth: np.ndarray,
    thresholds: np.ndarray | None,
    classes: Sequence[str],
    pred: np.ndarray | None = None,
) -> dict:
    """Micro/macro F1 and F2, mAP, mean F2 per image, and a per-label table.

    Args:
        proba: (n, labels) probabilities.
        truth: (n, labels) 0/1.
        thresholds: (labels,) decision thresholds, or None when ``pred`` is given.
        classes: the label names, in column order.
        pred: (n, labels) 0/1 decisions already made (a predictions CSV's labels);
            None: ``proba`` at ``thresholds``.
    """
    y = np.asarray(truth).astype(bool)
    if pred is None:
        pred = np.asarray(proba) >= np.asarray(thresholds)[None, :]
    pred = np.asarray(pred).astype(bool)
    tp = (pred & y).sum(axis=0).astype(float)
    fp = (pred & ~y).sum(axis=0).astype(float)
    fn = (~pred & y).sum(axis=0).astype(float)
    out = {"images": int(len(y))}
    for name, beta in (("f1", 1.0), ("f2", 2.0)):
        out[f"micro_{name}"] = _round(_fbeta(tp.sum(), fp.sum(), fn.sum(), beta))
        out[f"macro_{name}"] = _round(_fbeta(tp, fp, fn, beta).mean())
    # Planet's score: F2 of each image's predicted set, averaged over images.
    itp, ifp, ifn = (pred & y).sum(1), (pred & ~y).sum(1), (~pred & y).sum(1)
    # An image with no label that is given none is right: 1, not 0.
    per_image = np.where(itp + ifp + ifn == 0, 1.0, _fbeta(itp, ifp, ifn, 2.0))
    out["mean_f2"] = _round(per_image.mean())
    out["exact_match"] = _round((pred == y).all(axis=1).mean())
    per_label = {}
    for j, name in enumerate(classes):
        per_label[name] = {
            "support": int(y[:, j].sum()),
            "threshold": _round(thresholds[j]) if thresholds is not None else None,
            "precision": _round(tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0.0),
            "recall": _round(tp[j] / (tp[j] + fn[j]) if tp[j] + fn[j] else 0.0),
            "f1": _round(_fbeta(tp[j], fp[j], fn[j], 1.0)),
            "f2": _round(_fbeta(tp[j], fp[j], fn[j], 2.0)),
            "ap": _round(average_precision(proba[:, j], y[:, j])),
            "auc": _round(roc_auc(proba[:, j], y[:, j])),
        }
    aps = [v["ap"] for v in per_label.values() if v["ap"] is not None]
    out["mAP"] = _round(float(np.mean(aps))) if aps else None
    out["per_label"] = per_label
    return out
