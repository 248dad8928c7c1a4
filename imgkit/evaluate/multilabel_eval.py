"""Scoring multi-label predictions (``path,labels,p_<label>...``) against a dataset.

The predictions' ``labels`` column (the decisions predict made with the bundle's
per-label thresholds) gives micro/macro F1 and F2, the mean per-image F2 (Planet's
score) and exact-match accuracy; the ``p_<label>`` columns give each label's average
precision and ROC AUC, and their mean, mAP. Rows are matched to the truth by path as
for single-label predictions (:mod:`imgkit.evaluate.matching`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.data.dataset import Dataset, label_set
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.evaluate.matching import Truth, _truth_from_pairs, prob_columns
from imgkit.train.multilabel_scores import scores


def is_multilabel_truth(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a multi-label dataset folder."""
    path = Path(source)
    if not path.is_dir():
        return False
    try:
        return Dataset.load(path).task == "multilabel"
    except BadDatasetError:
        return False


def load_multilabel_truth(source: str | os.PathLike) -> Truth:
    """The label sets of a multi-label dataset folder, looked up by path."""
    ds = Dataset.load(source)
    if ds.task != "multilabel":
        raise BadDatasetError(f"{source}: a {ds.task} dataset, not a multi-label one")
    m = ds.manifest
    return _truth_from_pairs(m["path"], m["label"], ds.classes, str(source), [ds.root], True)


def evaluate_multilabel(preds: pd.DataFrame, truth: Truth, name: str = "predictions"):
    """Score multi-label prediction rows.

    Returns:
        (summary dict, per-label DataFrame, unmatched paths).

    Raises:
        BadInputError: no labels column, p_<label> columns other than the truth's labels,
            or no row matched.
    """
    classes = truth.classes
    if "labels" not in preds.columns:
        raise BadInputError(f"{name}: multi-label predictions need a labels column")
    want = [f"p_{c}" for c in classes]
    have = prob_columns(preds)
    if sorted(have) != sorted(want):
        raise BadInputError(
            f"{name}: p_ columns {have[:6]} are not the truth's labels {classes[:6]} "
            "(a bundle trained on another dataset?)"
        )
    index = {c: j for j, c in enumerate(classes)}
    rows, unmatched, seen = [], [], set()
    for k, path in enumerate(preds["path"]):
        i = truth.find(path)
        if i is None:
            unmatched.append(path)
        elif i not in seen:
            seen.add(i)
            rows.append((k, i))
    if not rows:
        raise BadInputError(f"{name}: no predicted path is in the truth {truth.source}")
    n, c = len(rows), len(classes)
    y, pred = np.zeros((n, c), bool), np.zeros((n, c), bool)
    for r, (k, i) in enumerate(rows):
        for label in label_set(truth.labels[i]):
            y[r, index[label]] = True
        for label in label_set(preds["labels"].iloc[k]):
            if label not in index:
                raise BadInputError(f"{name} row {k + 2}: unknown label {label!r}")
            pred[r, index[label]] = True
    try:
        proba = preds[want].iloc[[k for k, _ in rows]].to_numpy(dtype=np.float64)
    except ValueError as e:
        raise BadInputError(f"{name}: a p_ column holds something not a number ({e})") from None
    result = scores(proba, y, None, classes, pred=pred)
    per_label = pd.DataFrame(
        [{"label": label, **values} for label, values in result.pop("per_label").items()]
    ).drop(columns=["threshold"])
    return result, per_label, unmatched
