"""Label issues from predictions, confident-learning style (implemented here).

For each class j the threshold t_j is the mean predicted probability of j over the
images labelled j (how sure the model is, on average, of its own class). An image
is confidently of class j when p_j >= t_j; an image labelled y whose most probable
confident class is some other j is a suspected label error. Its score is the normalised margin
p_j / t_j - p_y / t_y (higher: more certainly wrong), and issues.csv's ``other``
names j. Dividing by the thresholds matters with a weak predictor: its systematic
confusions (shirt against T-shirt) leave hard classes with low t, so a raw margin
p_j - p_y ranks every confusable image of an easy class above the plain mistakes
of a hard one; measured on bench_audit.py's set it put fewer known wrong labels
in the top list under each of nine predictors tried.
Predictions should be out-of-fold (``imgkit cv``'s oof.csv): a model scored on
its own training images has memorised their labels, wrong ones included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_class_thresholds(proba: np.ndarray, given: np.ndarray, k: int) -> np.ndarray:
    """t_j: the mean probability of class j over the images labelled j (1 when none are)."""
    t = np.ones(k)
    for j in range(k):
        mine = given == j
        if mine.any():
            t[j] = proba[mine, j].mean()
    return t


def suspects(proba: np.ndarray, given: np.ndarray, margin: float = 0.0):
    """Images whose confident class is not their label.

    Args:
        proba: (n, k) predicted probabilities.
        given: (n,) the given class indices.
        margin: report only when the raw margin p_likely - p_given exceeds this.

    Returns:
        (indices, likely classes, scores), most certain first.
    """
    n, k = proba.shape
    t = per_class_thresholds(proba, given, k)
    confident = proba >= t[None, :]
    masked = np.where(confident, proba, -1.0)
    likely = masked.argmax(axis=1)
    has = confident.any(axis=1)
    rows = np.arange(n)
    raw = proba[rows, likely] - proba[rows, given]
    t = np.maximum(t, 1e-6)  # a class the model never predicts would divide by ~0
    score = proba[rows, likely] / t[likely] - proba[rows, given] / t[given]
    flagged = np.flatnonzero(has & (likely != given) & (raw > margin))
    order = flagged[np.argsort(-score[flagged], kind="stable")]
    return order, likely[order], score[order]


def label_rows(
    names: Sequence[str],
    splits: Sequence[str],
    classes: Sequence[str],
    proba: np.ndarray,
    given: np.ndarray,
    margin: float,
) -> list[dict]:
    """issues.csv rows for suspected labels; ``other`` holds the likely class."""
    idx, likely, score = suspects(proba, given, margin)
    return [
        {"path": names[i], "issue": "label", "score": round(float(s), 4),
         "other": classes[j], "split": splits[i], "other_split": ""}
        for i, j, s in zip(idx, likely, score, strict=True)
    ]  # fmt: skip
