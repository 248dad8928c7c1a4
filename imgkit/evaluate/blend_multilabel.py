"""Blending multi-label predictions (``path,labels,p_<label>...``) of the same images.

Each label's probability is its own binary case, so a multi-label blend is the
single-label one applied to every (image, label) pair as a two-class row
``[1 - p, p]`` (:func:`binary_rows`): ``mean`` is the weighted mean of each ``p_``
column, ``geometric`` the binary geometric mean (renormalised over p and 1 - p), the
weights fitted on out-of-fold predictions minimise the mean binary log loss over all
pairs, and the one temperature fitted after them is the shared one a multi-label model
carries. ``rank`` is not offered: ranks of different labels are not comparable.

The labels are decided again on the blend, never taken from the files: each label's
threshold is fitted on the OOF blend (F1 or F2, as ``train`` fits a model's on val), so
a blend needs the OOF predictions of its members and the truth.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from imgkit.errors import BadInputError
from imgkit.evaluate.blend import Table, combine, fit_blend
from imgkit.train import multilabel_scores as mls


def is_multilabel_csv(path: str | os.PathLike) -> bool:
    """Whether a predictions CSV is multi-label (a ``labels`` column); False if unreadable."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = [c.strip().strip('"') for c in f.readline().split(",")]
    except OSError:
        return False  # read_table says what is wrong with it
    return "labels" in header


def binary_rows(proba: np.ndarray) -> np.ndarray:
    """(n, labels) probabilities as (n * labels, 2) two-class rows ``[1 - p, p]``."""
    p = np.asarray(proba, dtype=np.float64).reshape(-1)
    return np.stack([1.0 - p, p], axis=1)


def _refuse_rank(method: str) -> None:
    """Raise the one error for ``--method rank``, which multi-label blends do not offer."""
    if method == "rank":
        raise BadInputError(
            "--method rank: not for multi-label predictions (ranks of different labels "
            "are not comparable); use mean or geometric"
        )


def blend_probabilities(probas: list[np.ndarray], weights, method: str) -> np.ndarray:
    """Aligned (n, labels) probabilities blended per label; (n, labels) out."""
    _refuse_rank(method)
    shape = np.shape(probas[0])
    rows = combine([binary_rows(p) for p in probas], weights, method)
    return rows[:, 1].reshape(shape)


def truth_matrix(table: Table, truth_source: str | os.PathLike) -> np.ndarray:
    """The (n, labels) 0/1 truth of ``table``'s rows, in its column order, from a
    multi-label dataset folder.

    Raises:
        BadInputError: other labels than the dataset's, or a path the dataset lacks.
    """
    from imgkit.data.dataset import label_set
    from imgkit.evaluate.multilabel_eval import load_multilabel_truth

    truth = load_multilabel_truth(truth_source)
    if sorted(truth.classes) != sorted(table.classes):
        raise BadInputError(
            f"{table.name}: labels {table.classes} are not {truth_source}'s {truth.classes}"
        )
    index = {c: j for j, c in enumerate(table.classes)}
    y = np.zeros((len(table.paths), len(index)), dtype=np.int64)
    for i, path in enumerate(table.paths):
        row = truth.find(path)
        if row is None:
            raise BadInputError(f"{table.name}: {path} has no labels in {truth_source}")
        for name in label_set(truth.labels[row]):
            y[i, index[name]] = 1
    return y


def fit_multilabel_blend(oof: list[Table], y: np.ndarray, method: str, metric: str) -> dict:
    """Weights and the shared temperature minimising the OOF blend's mean binary log
    loss, then per-label thresholds (``metric`` "f1" or "f2") fitted on the tempered
    OOF blend.

    Returns:
        {"weights", "temperature", "thresholds" (labels,), "oof" (the blend's scores)}.
    """
    _refuse_rank(method)  # before any fitting
    flat = y.reshape(-1)
    w, temperature = fit_blend([binary_rows(t.proba) for t in oof], flat, method)
    p = mls.temper(blend_probabilities([t.proba for t in oof], w, method), temperature)
    thresholds = np.round(mls.fit_thresholds(p, y, metric), 6)
    return {
        "weights": w,
        "temperature": float(temperature),
        "thresholds": thresholds,
        "oof": mls.scores(p, y, thresholds, oof[0].classes),
    }


def blend_frame(
    tables: list[Table], weights, method: str, temperature: float, thresholds
) -> pd.DataFrame:
    """Aligned multi-label tables blended, tempered and decided into predict's rows."""
    from imgkit.infer.predict import multilabel_frame

    p = mls.temper(blend_probabilities([t.proba for t in tables], weights, method), temperature)
    return multilabel_frame(tables[0].paths, p, tables[0].classes, thresholds)
