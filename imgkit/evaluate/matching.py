"""Matching prediction files to the truth: reading both, pairing rows by path, checking classes.

The truth is a dataset folder (its labelled splits) or a CSV of path,label; predictions
are imgkit's CSV (path,label,confidence,p_<class>...). Rows are paired by path, also
when one side holds absolute paths and the other relative ones."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.data.dataset import Dataset
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.evaluate.metrics import Report, evaluate


class _PathKeys:
    """Turns paths into the keys predictions and truth are matched on.

    Most specific first: the absolute path with its folder's symlinks and ".." resolved,
    then the path as written, normalised, for predictions made from another folder.
    Each folder is resolved once (a 70,000-image truth stays fast); the cache lives as
    long as one Truth, so a later change of folder or symlink is seen.
    """

    def __init__(self):
        self._dirs: dict[str, str] = {}

    def __call__(self, path: str, base: str | os.PathLike | None = None) -> list[str]:
        full = os.path.join(base, path) if base is not None else path
        if "\0" in full:
            # No file has such a name (realpath refuses it); it can match as written.
            return [os.path.normpath(path).replace("\\", "/")]
        head, name = os.path.split(os.path.abspath(full))
        real = self._dirs.get(head)
        if real is None:
            real = self._dirs[head] = os.path.realpath(head)
        return [os.path.join(real, name), os.path.normpath(path).replace("\\", "/")]


@dataclass
class Truth:
    """Known labels to score predictions against, looked up by path.

    Attributes:
        classes: the class names of the task, in index order.
        labels: label per truth row.
        keys: path key -> row index (several keys may lead to one row).
        source: where the truth came from, for messages.
        exact_classes: True when the predictions must cover exactly ``classes`` (a
            dataset); False when ``classes`` is just the labels a CSV happens to use.
    """

    classes: list[str]
    labels: list[str]
    keys: dict[str, int]
    source: str
    exact_classes: bool = True
    path_keys: _PathKeys = field(default_factory=_PathKeys, repr=False)
    files: list[str] = field(default_factory=list, repr=False)

    def find(self, path: str) -> int | None:
        """The truth row of a predicted path, or None."""
        for key in self.path_keys(path):
            if key in self.keys:
                return self.keys[key]
        return None


def _truth_from_pairs(paths, labels, classes, source, bases, exact) -> Truth:
    path_keys = _PathKeys()
    keys: dict[str, int] = {}
    kept_labels: list[str] = []
    files: list[str] = []
    for path, label in zip(paths, labels, strict=True):
        if not label:  # unlabeled rows cannot score anything
            continue
        i = len(kept_labels)
        kept_labels.append(label)
        files.append(os.path.join(bases[-1], path))  # a CSV's paths: from its folder
        for base in bases:
            for key in path_keys(path, base):
                keys.setdefault(key, i)
    return Truth(list(classes), kept_labels, keys, source, exact, path_keys, files)


def load_truth(source: str | os.PathLike) -> Truth:
    """Read the truth from a dataset folder or a CSV with ``path,label`` columns.

    A dataset's paths are matched as the files they name and as written in its
    manifest (relative to the folder). A CSV's relative paths are tried relative to the
    current folder and to the CSV's own folder.

    Raises:
        BadInputError: the source is neither, or has no labels.
    """
    source = Path(source)
    if source.is_dir():
        ds = Dataset.load(source)
        if ds.task != "classification":
            raise BadDatasetError(f"{source}: a {ds.task} dataset; eval scores classification here")
        m = ds.manifest
        unknown = sorted({v for v in m["label"] if v} - set(ds.classes))
        if unknown:
            raise BadDatasetError(
                f"{source}: manifest.csv has labels {unknown[:5]} that are not among the "
                f"classes of dataset.json ({ds.classes}); the folder is damaged"
            )
        return _truth_from_pairs(
            m["path"], m["label"], ds.classes, str(source), [source], exact=True
        )
    if not source.exists():  # a pipe (<(...)) is fine: it is not a regular file
        raise BadInputError(f"{source}: no such file or dataset folder")
    df = read_csv_strings(source)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise BadInputError(
            f"{source}: truth CSV needs columns path,label (missing {sorted(missing)})"
        )
    classes = sorted({v for v in df["label"] if v})
    if not classes:
        raise BadInputError(f"{source}: no labels in the truth CSV")
    return _truth_from_pairs(
        df["path"], df["label"], classes, str(source), [Path.cwd(), source.parent], exact=False
    )


def read_csv_strings(source) -> pd.DataFrame:
    """Read a CSV (a path or an open stream) with every cell as a string, "" for empty.

    Raises:
        BadInputError: the file cannot be read or parsed.
    """
    # Files and byte streams may start with a BOM (Excel); a text stream is decoded already.
    encoding = None if isinstance(source, io.TextIOBase) else "utf-8-sig"
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False, encoding=encoding)
    except (ValueError, OSError) as e:
        name = getattr(source, "name", source)
        raise BadInputError(f"{name}: cannot read the CSV ({e})") from e


def read_predictions(source) -> pd.DataFrame:
    """Read a predictions CSV (a path, or an open binary or text stream) as strings.

    Raises:
        BadInputError: unreadable, or without a ``path`` column and a label or ``p_``
            columns.
    """
    df = read_csv_strings(source)
    name = getattr(source, "name", source)
    if "path" not in df.columns:
        raise BadInputError(f"{name}: predictions need a path column (got {list(df.columns)})")
    if "label" not in df.columns and not prob_columns(df):
        raise BadInputError(f"{name}: predictions need a label column or p_<class> columns")
    return df


def prob_columns(df: pd.DataFrame) -> list[str]:
    """The ``p_<class>`` columns of a predictions table, in file order."""
    return [c for c in df.columns if c.startswith("p_")]


@dataclass
class Matched:
    """Predictions paired with their truth rows.

    Attributes:
        report: the scores.
        unmatched: predicted paths with no truth label, in file order.
        duplicates: paths predicted more than once (only the first row is scored).
        scored: the scored rows themselves (image files, paths as predicted, true and
            predicted class indices, probabilities) for galleries.
    """

    report: Report
    unmatched: list[str]
    duplicates: list[str]
    scored: object = None


def evaluate_predictions(preds: pd.DataFrame, truth: Truth) -> Matched:
    """Match predictions to the truth by path and score them.

    Raises:
        BadInputError: the predictions are for other classes than the truth, or no
            predicted path is in the truth.
    """
    pcols = prob_columns(preds)
    pred_classes = [c[2:] for c in pcols]
    classes = _check_classes(pred_classes, preds, truth)
    index = {c: i for i, c in enumerate(classes)}

    rows, truth_rows, unmatched, duplicates = [], [], [], []
    seen: set[int] = set()
    for i, path in enumerate(preds["path"]):
        t = truth.find(path)
        if t is None:
            unmatched.append(path)
        elif t in seen:
            duplicates.append(path)
        else:
            seen.add(t)
            rows.append(i)
            truth_rows.append(t)
    if not rows:
        example = f" (e.g. {unmatched[0]})" if unmatched else ""
        raise BadInputError(f"no predicted path is in the truth {truth.source}{example}")

    part = preds.iloc[rows]
    y_true = np.array([index[truth.labels[t]] for t in truth_rows], dtype=np.int64)
    proba = None
    if pcols:
        try:
            # Columns in the truth's class order, whatever their order in the file.
            proba = part[[f"p_{c}" for c in classes]].astype(np.float64).to_numpy()
        except ValueError as e:
            raise BadInputError(f"predictions: p_ columns must be numbers ({e})") from e
    if "label" in part.columns:
        unknown = sorted(set(part["label"]) - set(index))
        if unknown:
            raise BadInputError(
                f"predicted labels {unknown[:5]} are not classes of the truth ({classes})"
            )
        y_pred = np.array([index[v] for v in part["label"]], dtype=np.int64)
    else:
        y_pred = proba.argmax(axis=1)
    report = evaluate(y_true, y_pred, classes, proba)
    from imgkit.evaluate.gallery import Scored

    names = [str(p) for p in part["path"]]
    files = [_image_file(n, t, truth) for n, t in zip(names, truth_rows, strict=True)]
    scored = Scored(files, names, list(classes), y_true, y_pred, proba)
    return Matched(report, unmatched, duplicates, scored)


def _image_file(name: str, row: int, truth: Truth) -> str:
    """The file a predicted path names: as written when it exists, else the truth's."""
    if os.path.isfile(name) or not truth.files:
        return name
    return str(truth.files[row])


def _check_classes(pred_classes: list[str], preds: pd.DataFrame, truth: Truth) -> list[str]:
    # A model from another task shows up here: its p_ columns name other classes.
    truth_set = set(truth.classes)
    if pred_classes:
        pred_set = set(pred_classes)
        ok = pred_set == truth_set if truth.exact_classes else truth_set <= pred_set
        if not ok:
            raise BadInputError(
                f"the predictions are for classes {sorted(pred_set)} but the truth "
                f"{truth.source} has classes {sorted(truth_set)}; was the model trained "
                "for another task or dataset?"
            )
        return sorted(pred_set) if not truth.exact_classes else list(truth.classes)
    if not truth.exact_classes and "label" in preds.columns:
        # Labels only, against a CSV: a class may be missing from a small truth file.
        return sorted(truth_set | {v for v in preds["label"] if v})
    return list(truth.classes)
