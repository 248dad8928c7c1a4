"""Classification metrics in plain numpy: accuracy, per-class scores, log loss, AUCs.

Labels are class indices into a ``classes`` list; probabilities are an (n, k) array
whose columns follow the same order. Every function is a pure computation with no I/O,
so ``imgkit eval`` stays free of TensorFlow and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

LOG_LOSS_EPS = 1e-15

# Summary metrics where higher is better: the names ``--fail-under`` accepts.
GATE_METRICS = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "macro_precision",
    "macro_recall",
    "balanced_accuracy",
    "roc_auc",
    "pr_auc",
)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count (true, predicted) pairs: rows are true classes, columns predicted ones."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # A class never predicted (or never present) scores 0 rather than NaN, as is usual.
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    Returns:
        Arrays of length k under "precision", "recall", "f1", "support" and
        "predicted" (how often each class was predicted).
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": predicted,
    }


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-probability of the true class.

    Probabilities are clipped to ``[eps, 1]`` and each row renormalised to sum to 1, so
    a confident mistake costs about ``-log(eps)`` instead of infinity, and rounded CSV
    values that do not sum exactly to 1 are still scored fairly.
    """
    proba = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    y_true = np.asarray(y_true, dtype=np.int64)
    picked = proba[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(picked)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    # Ranks from 1; tied values share the mean of their ranks (needed for a fair AUC).
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    n = len(values)
    # Boundaries of runs of equal values in the sorted array.
    bounds = np.flatnonzero(np.diff(sorted_vals)) + 1
    for end in [*bounds.tolist(), n]:
        ranks[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    return ranks


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random negative.

    Computed from ranks (the Mann-Whitney statistic), ties counting one half.

    Returns:
        The AUC, or None when only one class is present (it is then undefined).
    """
    pos = np.asarray(is_positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve as average precision.

    ``sum over thresholds of (R_i - R_{i-1}) * P_i``, one threshold per distinct score,
    highest first (no interpolation).

    Returns:
        The average precision, or None when there is no positive example.
    """
    pos = np.asarray(is_positive, dtype=bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], pos[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    # Keep the last index of each run of equal scores: one point per threshold.
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / n_pos
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


@dataclass
class Report:
    """What ``evaluate`` found.

    Attributes:
        summary: JSON-ready dict: counts, overall metrics, per class, confusion.
        per_class: one row per class: class, precision, recall, f1, support.
        confusion: the confusion matrix, rows true and columns predicted classes.
        classes: class names, in index order.
    """

    summary: dict
    per_class: pd.DataFrame
    confusion: np.ndarray
    classes: list[str]

    def confusion_frame(self) -> pd.DataFrame:
        """The confusion matrix as a table: first column the true class."""
        df = pd.DataFrame(self.confusion, columns=self.classes)
        df.insert(0, "true", self.classes)
        return df


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    proba: np.ndarray | None = None,
) -> Report:
    """Score predicted class indices (and probabilities, if any) against the truth.

    Args:
        y_true: true class index per image.
        y_pred: predicted class index per image.
        classes: class names; indices refer to this list.
        proba: (n, k) predicted probabilities in ``classes`` order, or None; needed for
            log loss, ROC AUC and PR AUC.

    Returns:
        A Report. Binary tasks (two classes) also get balanced accuracy, ROC AUC and PR
        AUC, with ``classes[1]`` as the positive class.
    """
    classes = list(classes)
    k = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    matrix = confusion_matrix(y_true, y_pred, k)
    scores = per_class_scores(matrix)
    support = scores["support"]
    # Macro averages run over the classes seen in the truth or the predictions, so a
    # class absent from a small test set does not count as a zero.
    seen = (support > 0) | (scores["predicted"] > 0)
    summary: dict = {
        "n": int(len(y_true)),
        "classes": classes,
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "macro_precision": float(scores["precision"][seen].mean()),
        "macro_recall": float(scores["recall"][seen].mean()),
        "macro_f1": float(scores["f1"][seen].mean()),
        "weighted_f1": float(np.sum(scores["f1"] * support) / support.sum()),
    }
    if proba is not None:
        summary["log_loss"] = log_loss(y_true, proba)
    if k == 2:
        present = support > 0
        summary["balanced_accuracy"] = float(scores["recall"][present].mean())
        if proba is not None:
            summary["positive_class"] = classes[1]
            is_pos = y_true == 1
            for name, fn in (("roc_auc", roc_auc), ("pr_auc", average_precision)):
                value = fn(is_pos, proba[:, 1])
                if value is not None:
                    summary[name] = value
    per_class = pd.DataFrame(
        {
            "class": classes,
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": scores["f1"],
            "support": support.astype(np.int64),
        }
    )
    summary["per_class"] = {
        row["class"]: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1"]),
            "support": int(row["support"]),
        }
        for row in per_class.to_dict("records")
    }
    summary["confusion"] = matrix.tolist()
    return Report(summary=summary, per_class=per_class, confusion=matrix, classes=classes)


# The columns of ``imgkit eval``'s comparison of several prediction files, in order.
COMPARE_METRICS = (
    "n",
    "accuracy",
    "log_loss",
    "macro_f1",
    "weighted_f1",
    "balanced_accuracy",
    "roc_auc",
    "pr_auc",
)


def comparison_frame(summaries: Sequence[dict], names: Sequence[str]) -> pd.DataFrame:
    """One row per evaluated predictions file: its name and :data:`COMPARE_METRICS`.

    A metric no file has (the binary ones, for more than two classes) is left out;
    one some files lack is empty for those.
    """
    columns = [m for m in COMPARE_METRICS if any(m in s for s in summaries)]
    rows = [
        {"predictions": name, **{m: s.get(m) for m in columns}}
        for s, name in zip(summaries, names, strict=True)
    ]
    return pd.DataFrame(rows, columns=["predictions", *columns])


def check_gates(summary: dict, bars: dict[str, float]) -> list[str]:
    """Compare summary metrics with minimum values.

    Args:
        summary: a Report's summary.
        bars: metric name -> the lowest acceptable value.

    Returns:
        One line per failed bar (empty when all pass).

    Raises:
        KeyError: a metric was not computed for this evaluation (its name is the key).
    """
    failures = []
    for name, bar in bars.items():
        if name not in summary:
            raise KeyError(name)
        value = summary[name]
        if value < bar:
            failures.append(f"{name} {value:.4f} is below the bar {bar:g}")
    return failures


# --- predictions against the truth -----------------------------------------------------
