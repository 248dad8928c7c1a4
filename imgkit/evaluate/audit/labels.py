"""Label issues from predictions, confident-learning style (implemented here).

For each class j the threshold t_j is the mean predicted probability of j over the
images labelled j (how sure the model is, on average, of its own class). An image
is confidently of class j when p_j >= t_j; an image labelled y whose most probable
confident class is some other j is a suspected label error. Its score is
p_j - p_y (higher: more certainly wrong), and issues.csv's ``other`` names j.
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
        margin: report only when p_likely - p_given exceeds this.

    Returns:
        (indices, likely classes, scores), most certain first.
    """
    n, k = proba.shape
    t = per_class_thresholds(proba, given, k)
    confident = proba >= t[None, :]
    masked = np.where(confident, proba, -1.0)
    likely = masked.argmax(axis=1)
    has = confident.any(axis=1)
    score = proba[np.arange(n), likely] - proba[np.arange(n), given]
    flagged = np.flatnonzero(has & (likely != given) & (score > margin))
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
