"""Scoring multi-label predictions (``path,labels,p_<label>...``) against a dataset.

The predictions' ``labels`` column (the decisions predict made with the bundle's
per-label thresholds) gives micro/macro F1 and F2, the mean per-image F2 (Planet's
score) and exact-match accuracy; the ``p_<label>`` columns give each label's average
precision and ROC AUC, and their mean, mAP. Rows are matched to the truth by path as
for single-label predictions (:mod:`imgkit.evaluate.matching`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.data.dataset import LABEL_SEP, Dataset, label_set
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
    # An image with no label (--allow-empty) is a negative for every label, not an
    # unlabeled one: a lone separator keeps it (an empty entry would be skipped).
    labels = m["label"].where((m["label"] != "") | (m["split"] == "unlabeled"), LABEL_SEP)
    return _truth_from_pairs(m["path"], labels, ds.classes, str(source), [ds.root], True)


def evaluate_multilabel(preds: pd.DataFrame, truth: Truth, name: str = "predictions"):
    """Score multi-label prediction rows.

    Returns:
        (summary dict, per-label DataFrame, unmatched paths).

    Raises:
        BadInputError: no labels column, p_<label> columns other than the truth's labels,
            or no row matched.
    """
    tally = MultilabelTally(truth, name)
    tally.add(preds)
    return tally.result()


@dataclass
class MatchedRows:
    """One chunk's prediction rows that matched the truth.

    Attributes:
        rows: their positions in the chunk.
        truth_rows: their truth rows (:attr:`Truth.labels`, :attr:`Truth.files`).
        y, pred: (n, labels) true and decided labels.
        proba: (n, labels) the rows' probabilities, in the truth's label order.
    """

    rows: list[int]
    truth_rows: list[int]
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray


class MultilabelTally:
    """Multi-label prediction rows matched to the truth a chunk at a time, then scored.

    Only each matched image's true and decided labels and probabilities are kept (a
    few numbers per label), never the rows themselves: predictions stream through.
    A path met again (in any chunk) is scored once, as its first row.
    """

    def __init__(self, truth: Truth, name: str = "predictions"):
        self.truth, self.name = truth, name
        self.classes = truth.classes
        self.index = {c: j for j, c in enumerate(self.classes)}
        self.want = [f"p_{c}" for c in self.classes]
        self.unmatched: list[str] = []
        self.seen: set[int] = set()
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.offset = 0  # rows read before this chunk, for messages

    def _check(self, preds: pd.DataFrame) -> None:
        if "path" not in preds.columns:
            raise BadInputError(f"{self.name}: predictions need a path column")
        if "labels" not in preds.columns:
            raise BadInputError(f"{self.name}: multi-label predictions need a labels column")
        have = prob_columns(preds)
        if sorted(have) != sorted(self.want):
            raise BadInputError(
                f"{self.name}: p_ columns {have[:6]} are not the truth's labels "
                f"{self.classes[:6]} (a bundle trained on another dataset?)"
            )

    def add(self, preds: pd.DataFrame) -> MatchedRows:
        """Match one chunk of rows (columns path, labels, p_<label>...); what matched."""
        self._check(preds)
        rows, truth_rows = [], []
        for k, path in enumerate(preds["path"]):
            i = self.truth.find(path)
            if i is None:
                self.unmatched.append(path)
            elif i not in self.seen:
                self.seen.add(i)
                rows.append(k)
                truth_rows.append(i)
        n, c = len(rows), len(self.classes)
        y, pred = np.zeros((n, c), bool), np.zeros((n, c), bool)
        for r, (k, i) in enumerate(zip(rows, truth_rows, strict=True)):
            for label in label_set(self.truth.labels[i]):
                y[r, self.index[label]] = True
            for label in label_set(preds["labels"].iloc[k]):
                if label not in self.index:
                    raise BadInputError(
                        f"{self.name} row {self.offset + k + 2}: unknown label {label!r}"
                    )
                pred[r, self.index[label]] = True
        try:
            proba = preds[self.want].iloc[rows].to_numpy(dtype=np.float64)
        except ValueError as e:
            raise BadInputError(
                f"{self.name}: a p_ column holds something not a number ({e})"
            ) from None
        self.offset += len(preds)
        self.parts.append((y, pred, proba))
        return MatchedRows(rows, truth_rows, y, pred, proba)

    def result(self):
        """(summary dict, per-label DataFrame, unmatched paths) of every chunk added.

        Raises:
            BadInputError: no row matched the truth.
        """
        if not self.seen:
            raise BadInputError(
                f"{self.name}: no predicted path is in the truth {self.truth.source}"
            )
        y, pred, proba = (np.concatenate(part) for part in zip(*self.parts, strict=True))
        result = scores(proba, y, None, self.classes, pred=pred)
        per_label = pd.DataFrame(
            [{"label": label, **values} for label, values in result.pop("per_label").items()]
        ).drop(columns=["threshold"])
        return result, per_label, self.unmatched
