"""Temperature scaling: one number that makes a model's probabilities honest.

A model trained with label smoothing 0.1 never says more than about 0.95, so its log
loss cannot fall below about 0.05 even when it is always right; other models are
over-confident. Dividing the log-probabilities by a temperature T fitted on the
validation split (the NLL minimiser) fixes both and never changes which class wins.

``softmax(log p / T)`` is the same as dividing the logits by T (the two differ by a
per-row constant); for a sigmoid model, whose two columns are 1-p and p, it is
``sigmoid(logit / T)``. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

# Probabilities are clipped here before a log loss, as scikit-learn and Kaggle do: a
# single saturated wrong answer should count as very bad, not as infinite.
EPS = 1e-15
# T is searched in [T_MIN, T_MAX]. The floor matters: a small val split that the model
# separates perfectly has its log loss fall forever as T -> 0, and a T fitted there
# (0.05 was seen on 28 val images) makes every later mistake cost ~20x too much.
# 0.4 is enough to undo label smoothing 0.1 (it lifts a capped 0.95 to 0.9994).
T_MIN, T_MAX = 0.4, 20.0


def as_two_columns(proba: np.ndarray) -> np.ndarray:
    """(n, k) probabilities from (n, k), or from (n,) / (n, 1) P(class 1) of a sigmoid."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        p = p.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    return p


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened (T > 1) or sharpened (T < 1): softmax(log p / T)."""
    p = as_two_columns(proba)
    if temperature == 1:
        return p
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logp = np.log(np.clip(p, 1e-300, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (natural log)."""
    p = as_two_columns(proba)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(y) != len(p):
        raise ValueError(f"{len(p)} probability rows but {len(y)} labels")
    if len(y) == 0:
        return float("nan")
    picked = np.clip(p[np.arange(len(y)), y], EPS, 1.0)
    return float(-np.log(picked).mean()) + 0.0  # + 0.0: no "-0.0" in imgkit.json


def fit_temperature(
    proba: np.ndarray, labels: np.ndarray, tol: float = 1e-4, min_gain: float = 1e-6
) -> float:
    """The temperature T minimising the log loss of ``temper(proba, T)`` on ``labels``.

    The log loss is convex in 1/T, so it has one minimum along log T: a coarse grid
    over [T_MIN, T_MAX] brackets it and a golden-section search refines it. T stays 1
    when scaling gains less than ``min_gain`` (already calibrated, or nothing to fit).

    Args:
        proba: (n, k) probabilities, or (n,) / (n, 1) P(class 1) of a sigmoid model.
        labels: (n,) true class indices.
        tol: width of the final bracket in log T.
        min_gain: least log-loss improvement worth a temperature other than 1.

    Returns:
        T, rounded to 4 significant digits.
    """
    p = as_two_columns(proba)
    y = np.asarray(labels).reshape(-1)
    if len(np.unique(y)) < 2:  # no labels, or one class: nothing to fit
        return 1.0

    def loss(log_t: float) -> float:
        return log_loss(temper(p, math.exp(log_t)), y)

    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), 25)
    values = [loss(g) for g in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    best = (lo + hi) / 2
    if loss(best) > loss(0.0) - min_gain:
        return 1.0
    return float(f"{math.exp(best):.4g}")
