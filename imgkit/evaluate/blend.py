"""Blending: several prediction CSVs of the same images made into one.

Three ways to combine the class probabilities of models ``i`` with weights ``w_i``:

- ``mean``: ``sum w_i p_i`` (weights normalised): the ensemble's usual average.
- ``geometric``: ``prod p_i ** w_i``, renormalised per image: a model that is sure an
  image is not a class can veto it.
- ``rank``: each model's probabilities of a class are replaced by their rank among the
  images (scaled to (0, 1]), then averaged and renormalised: for metrics that read only
  the order (ROC AUC); the result is not a calibrated probability.

The files must hold the same images (paths) and the same classes; rows are aligned by
path to the first file's order. :func:`fit_weights` chooses the weights minimising the
log loss of out-of-fold predictions (``imgkit cv``'s oof.csv) against the truth: the
log loss is convex in the weights for every method, so a descent on the simplex finds
the optimum. :func:`fit_blend` then fits one temperature on the OOF blend: a weighted
mean of calibrated probabilities is not itself calibrated (where the models disagree
it is pulled toward the middle, so it is under-confident), and the temperature undoes
what the OOF predictions show of that, as ``imgkit cv`` does for its averaged folds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from imgkit.errors import BadInputError
from imgkit.evaluate.matching import load_truth, prob_columns, read_predictions
from imgkit.infer.predict import prediction_frame
from imgkit.train.calibration import fit_temperature, log_loss, temper

METHODS = ("mean", "geometric", "rank")
_EPS = 1e-15


@dataclass
class Table:
    """One predictions CSV: its paths (in file order), classes and probabilities."""

    name: str
    paths: list[str]
    classes: list[str]
    proba: np.ndarray


def read_table(path: str | os.PathLike) -> Table:
    """A predictions CSV's probabilities; BadInputError naming the file if unusable."""
    df = read_predictions(path)
    cols = prob_columns(df)
    if not cols:
        raise BadInputError(f"{path}: no p_<class> columns to blend")
    paths = list(df["path"])
    repeated = pd.Series(paths)[pd.Series(paths).duplicated()]
    if len(repeated):
        raise BadInputError(f"{path}: {repeated.iloc[0]} appears more than once")
    try:
        proba = df[cols].astype(float).to_numpy()
    except ValueError as e:
        raise BadInputError(f"{path}: a probability is not a number ({e})") from e
    if len(proba) and (not np.isfinite(proba).all() or proba.min() < 0 or proba.max() > 1):
        raise BadInputError(f"{path}: probabilities must lie in [0, 1]")
    return Table(str(path), paths, [c[2:] for c in cols], proba)


def align(tables: list[Table]) -> list[Table]:
    """The tables with rows and class columns in the first one's order.

    Raises:
        BadInputError: a table holds other paths or other classes than the first.
    """
    first = tables[0]
    order = {p: i for i, p in enumerate(first.paths)}
    out = [first]
    for t in tables[1:]:
        if sorted(t.classes) != sorted(first.classes):
            raise BadInputError(
                f"{t.name}: classes {t.classes} differ from {first.name}'s {first.classes}"
            )
        have = set(t.paths)
        missing = next((p for p in first.paths if p not in have), None)
        if missing is not None:
            raise BadInputError(f"{t.name}: not the same images: no row for {missing}")
        extra = next((p for p in t.paths if p not in order), None)
        if extra is not None:
            raise BadInputError(f"{t.name}: not the same images: {extra} is not in {first.name}")
        rows = np.argsort([order[p] for p in t.paths])
        cols = [t.classes.index(c) for c in first.classes]
        out.append(Table(t.name, first.paths, first.classes, t.proba[rows][:, cols]))
    return out


def parse_weights(text: str | None, n: int) -> np.ndarray:
    """``--weights 2,1``: one non-negative number per file, not all 0 (None: equal)."""
    if text is None:
        return np.full(n, 1.0 / n)
    try:
        w = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise BadInputError(f"--weights {text!r}: expected numbers separated by commas") from None
    if len(w) != n:
        raise BadInputError(f"--weights {text!r}: {len(w)} weights for {n} prediction files")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise BadInputError(f"--weights {text!r}: weights must be non-negative, not all 0")
    return w / w.sum()


def _ranks(p: np.ndarray) -> np.ndarray:
    """Each column's values as ranks among the rows (ties averaged), scaled to (0, 1]."""
    s = pd.DataFrame(p).rank(axis=0, method="average").to_numpy()
    return s / max(len(p), 1)


def combine(probas: list[np.ndarray], weights: np.ndarray, method: str = "mean") -> np.ndarray:
    """The blended (n, k) probabilities (rows summing to 1) of aligned arrays."""
    if method not in METHODS:
        raise BadInputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    if method == "geometric":
        logp = sum(wi * np.log(np.clip(p, _EPS, 1.0)) for wi, p in zip(w, probas, strict=True))
        logp = logp - logp.max(axis=1, keepdims=True)
        out = np.exp(logp)
    elif method == "rank":
        out = sum(wi * _ranks(p) for wi, p in zip(w, probas, strict=True))
    else:
        out = sum(wi * p for wi, p in zip(w, probas, strict=True))
    return out / out.sum(axis=1, keepdims=True)


def blend(
    tables: list[Table], weights: np.ndarray, method: str = "mean", temperature: float = 1.0
) -> pd.DataFrame:
    """Aligned tables blended (then tempered by ``temperature``) into prediction rows
    (predict's columns)."""
    p = temper(combine([t.proba for t in tables], weights, method), temperature)
    return prediction_frame(tables[0].paths, p, tables[0].classes)


def truth_labels(table: Table, truth_source: str | os.PathLike) -> np.ndarray:
    """The true class index of each row of ``table``, from a dataset folder or CSV.

    Raises:
        BadInputError: other classes than the truth's, or a path with no label there.
    """
    truth = load_truth(truth_source)
    if sorted(truth.classes) != sorted(table.classes):
        raise BadInputError(
            f"{table.name}: classes {table.classes} are not {truth_source}'s {truth.classes}"
        )
    index = {c: i for i, c in enumerate(table.classes)}
    labels = []
    for path in table.paths:
        row = truth.find(path)
        if row is None:
            raise BadInputError(f"{table.name}: {path} has no label in {truth_source}")
        labels.append(index[truth.labels[row]])
    return np.array(labels, dtype=np.int64)


def fit_weights(
    probas: list[np.ndarray], labels: np.ndarray, method: str = "mean", steps: int = 400
) -> np.ndarray:
    """The weights on the simplex minimising the blend's log loss on ``labels``.

    Exponentiated-gradient descent from equal weights, with the step halved whenever
    the loss would rise (the loss is convex in the weights; gradients are central
    differences, cheap for a handful of models).
    """
    n = len(probas)
    w = np.full(n, 1.0 / n)
    if n == 1:
        return w

    def loss(v: np.ndarray) -> float:
        return log_loss(combine(probas, v / v.sum(), method), labels)

    current, step, h = loss(w), 1.0, 1e-6
    for _ in range(steps):
        grad = np.array([(loss(w + h * e) - loss(w - h * e)) / (2 * h) for e in np.eye(n)])
        while step > 1e-8:
            trial = w * np.exp(-step * (grad - grad.min()))
            trial /= trial.sum()
            value = loss(trial)
            if value < current - 1e-12:
                break
            step /= 2
        else:
            break
        gain, w, current = current - value, trial, value
        step *= 1.5
        if gain < 1e-10:
            break
    return w


def fit_blend(
    probas: list[np.ndarray], labels: np.ndarray, method: str = "mean"
) -> tuple[np.ndarray, float]:
    """The weights (:func:`fit_weights`), then one temperature for their blend, both
    minimising the OOF log loss; the temperature is 1 for ``rank`` (not probabilities).

    Returns:
        (weights summing to 1, temperature).
    """
    w = fit_weights(probas, labels, method)
    if method == "rank":
        return w, 1.0
    return w, fit_temperature(combine(probas, w, method), labels)
