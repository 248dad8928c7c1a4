"""Pseudo-labels from multi-label predictions (``prep DATA preds.csv --pseudo``).

A multi-label prediction (``imgkit predict``'s ``path,labels,p_<label>...``) is one
yes/no per label, so an image is taken only when every one of them is sure: each
label's probability at least P (the label is present) or at most 1 - P (absent), P
being ``--min-confidence``. Its label set is the labels decided present; the CSV's
``labels`` column, decided by the bundle's per-label thresholds, is not read, since a
label just past its threshold is exactly the guess a pseudo-label must not be. One
unsure label is enough to leave the image out: taking its sure labels alone would
teach the model that the unsure one is absent.

An image with every label decided absent has no label; it is taken only with
``--allow-empty``, as prep takes such rows of a labels CSV. What is not taken is
listed in rejects.csv with the reason, and counted in prep's summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.data.dataset import LABEL_SEP
from imgkit.data.folds import FOLDED_SPLIT
from imgkit.data.records import Record, Reject
from imgkit.errors import BadInputError

UNDECIDED = "skipped: pseudo-labels not all decided"
NO_LABEL = "skipped: pseudo-labels decided no label"


def is_multilabel_predictions(df: pd.DataFrame) -> bool:
    """Whether a predictions table is multi-label: a ``labels`` column, no ``label``."""
    return "labels" in df.columns and "label" not in df.columns


def label_columns(df: pd.DataFrame, csv_path: Path) -> list[str]:
    """The labels of a multi-label predictions table's ``p_<label>`` columns.

    Raises:
        BadInputError: no path column, or no ``p_`` column.
    """
    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    if "path" not in df.columns or not labels:
        raise BadInputError(
            f"{csv_path}: not a multi-label predictions CSV (it needs path, labels and "
            "p_<label> columns; make one with `imgkit predict`)"
        )
    return labels


def decide(proba: np.ndarray, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(present, sure) per (image, label): present where p >= P, sure where also
    p <= 1 - P (absent), for ``min_confidence`` P of at least 0.5."""
    present = proba >= min_confidence
    # 1 - 0.9 is 0.09999999999999998 in binary: a probability written 0.1 must count.
    return present, present | (proba <= 1.0 - min_confidence + 1e-12)


def multilabel_pseudo_records(
    df: pd.DataFrame,
    csv_path: Path,
    min_confidence: float,
    classes: list[str] | None,
    allow_empty: bool,
    resolve,
) -> tuple[list[Record], list[Reject], list[str]]:
    """The rows of a multi-label predictions table sure of every label, as records.

    Args:
        df: the CSV's rows, every cell a string.
        csv_path: the CSV, for messages.
        min_confidence: P, at least 0.5.
        classes: the dataset's labels (the p_ columns must be exactly these), or None.
        allow_empty: take an image whose every label is decided absent.
        resolve: a listed path to the image file (None when missing).

    Returns:
        (pseudo-labelled records, rejects, the labels of the p_ columns).

    Raises:
        BadInputError: not multi-label predictions, labels other than the dataset's, a
            p_ cell not a probability, P below 0.5.
    """
    labels = label_columns(df, csv_path)
    if classes is not None and sorted(labels) != sorted(classes):
        raise BadInputError(
            f"{csv_path}: the predictions' labels {sorted(labels)[:8]} are not the "
            f"dataset's {sorted(classes)[:8]} (a bundle trained on other data?)"
        )
    if min_confidence < 0.5:
        raise BadInputError(
            f"--min-confidence {min_confidence}: multi-label pseudo-labels need at least "
            "0.5 (a label is decided present at p >= P and absent at p <= 1 - P)"
        )
    try:
        proba = df[[f"p_{c}" for c in labels]].to_numpy(dtype=np.float64)
    except ValueError as e:
        raise BadInputError(f"{csv_path}: a p_ column holds something not a number ({e})") from None
    if not np.all((proba >= 0) & (proba <= 1)):
        raise BadInputError(f"{csv_path}: a p_ column holds a value outside 0..1")
    present, sure = decide(proba, min_confidence)
    low = 1.0 - min_confidence
    records, rejects = [], []
    for i, path in enumerate(df["path"]):
        found = resolve(path)
        if found is None:
            rejects.append(Reject(path, "pseudo-label: file not found"))
        elif not sure[i].all():
            unsure = ", ".join(
                f"{labels[j]} {proba[i, j]:.3g}" for j in np.flatnonzero(~sure[i])[:5]
            )
            why = f"{low:.3g} < p < {min_confidence}: {unsure}"
            rejects.append(Reject(path, f"{UNDECIDED} ({why})"))
        elif not present[i].any() and not allow_empty:
            rejects.append(Reject(path, f"{NO_LABEL} (--allow-empty takes such images)"))
        else:
            # In sorted order, as prep writes a multi-label CSV's label sets.
            names = sorted(labels[j] for j in np.flatnonzero(present[i]))
            label = LABEL_SEP.join(names)
            records.append(Record(str(found), label=label, split=FOLDED_SPLIT, pseudo=True))
    return records, rejects, labels
