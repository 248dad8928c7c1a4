"""Decision thresholds for binary (sigmoid) models, chosen on validation probabilities.

A sigmoid model says P(classes[1]); the label is classes[1] when that reaches the
threshold. 0.5 is right only for balanced, well-calibrated data: on IDC patches (~28%
positive) a model trained with balanced class weights over-predicts the positive
class, and one trained without them under-predicts it. A threshold picked on the val
split, for the metric that matters (F1 of the positive class, or balanced accuracy),
undoes that without retraining. Pure numpy: no Keras here.
"""

from __future__ import annotations

import numpy as np

from imgkit.errors import BadInputError

METRICS = ("f1", "balanced")
# What ``--threshold`` accepts besides a number; "auto" means F1, "none" means 0.5 via argmax.
CHOICES = ("auto", "f1", "f2", "balanced", "none")


def parse_threshold(value: str | float | None) -> tuple[str | None, float | None]:
    """Read ``--threshold``: a metric to optimise, a fixed value, or nothing.

    Returns:
        ``(metric, None)`` to choose on val, ``(None, value)`` for a fixed threshold,
        or ``(None, None)`` for none (the plain argmax, i.e. 0.5).

    Raises:
        BadInputError: not one of auto|f1|balanced|none or a number in (0, 1).
    """
    if value is None:
        return None, None
    text = str(value).strip().lower()
    if text == "none":
        return None, None
    if text in ("auto", "f1"):
        return "f1", None
    if text in ("balanced", "f2"):  # f2: multi-label datasets only
        return text, None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if 0 < number < 1:
        return None, number
    raise BadInputError(
        f"--threshold must be auto, f1, f2, balanced, none or a number in (0, 1), got {value!r}"
    )


def _counts(p: np.ndarray, y: np.ndarray, t: np.ndarray):
    """True/false positives/negatives at each threshold in ``t`` (vectorised)."""
    pred = p[None, :] >= t[:, None]
    pos = y[None, :] == 1
    tp = (pred & pos).sum(axis=1)
    fp = (pred & ~pos).sum(axis=1)
    fn = (~pred & pos).sum(axis=1)
    tn = (~pred & ~pos).sum(axis=1)
    return tp, fp, fn, tn


def score_at(p, y, threshold: float, metric: str) -> float:
    """``metric`` ("f1" of class 1, or "balanced" accuracy) at one threshold."""
    return float(
        _scores(np.asarray(p, float), np.asarray(y).astype(int), np.array([threshold]), metric)[0]
    )


def _scores(p: np.ndarray, y: np.ndarray, t: np.ndarray, metric: str) -> np.ndarray:
    tp, fp, fn, tn = (c.astype(np.float64) for c in _counts(p, y, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "f1":
            out = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        else:
            tpr = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            tnr = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
            out = (tpr + tnr) / 2
    return out


def choose_threshold(p1, labels, metric: str = "f1") -> tuple[float, float]:
    """The threshold on P(class 1) that maximises ``metric`` on these examples.

    Candidates are the midpoints between consecutive distinct probabilities (plus one
    below the smallest and 0.5 itself), so the choice sits between examples rather than
    on one; ties go to the candidate closest to 0.5, which keeps the choice stable when
    a small val split leaves a wide flat optimum.

    Args:
        p1: probabilities of class 1, shape (n,).
        labels: 0/1 true labels, shape (n,).
        metric: "f1" (F1 of class 1) or "balanced" (balanced accuracy).

    Returns:
        (threshold, the metric's value there).

    Raises:
        BadInputError: unknown metric, empty input, or only one class present.
    """
    if metric not in METRICS:
        raise BadInputError(f"threshold metric must be one of {', '.join(METRICS)}, got {metric!r}")
    p = np.asarray(p1, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(int).reshape(-1)
    if len(p) == 0 or len(p) != len(y):
        raise BadInputError("choosing a threshold needs as many probabilities as labels (>0)")
    if len(np.unique(y)) < 2:
        raise BadInputError(
            "choosing a threshold needs both classes in the val split; it has only one"
        )
    u = np.unique(p)
    candidates = np.concatenate([[u[0] / 2], (u[:-1] + u[1:]) / 2, [0.5]])
    # 0.5 always passes, so there is at least one candidate.
    candidates = candidates[(candidates > 0) & (candidates < 1)]
    scores = _scores(p, y, candidates, metric)
    best = scores.max()
    tied = candidates[np.isclose(scores, best)]
    chosen = float(tied[np.argmin(np.abs(tied - 0.5))])
    return chosen, float(best)


def apply_threshold(p1, threshold: float) -> np.ndarray:
    """0/1 decisions: 1 where P(class 1) >= ``threshold``."""
    return (np.asarray(p1, dtype=np.float64) >= float(threshold)).astype(int)


def raw_threshold(threshold: float, temperature: float) -> float:
    """The same decision on the model's raw probabilities as ``threshold`` on tempered ones.

    For two classes a temperature divides the logit (``logit p' = logit p / T``), a
    monotonic map, so ``p' >= t`` exactly when ``logit p >= T logit t``: with
    ``--uncalibrated`` predict keeps the same labels.
    """
    t = min(max(float(threshold), 1e-12), 1 - 1e-12)
    z = float(temperature) * np.log(t / (1 - t))
    return float(1 / (1 + np.exp(-z)))
