"""Turn a predictions CSV into a competition submission file (Kaggle style).

With a sample submission, the output copies its header, its id column and its row
order, and fills its second column with one probability per id; the prediction for an
id is found by the id in its path (the file name stem by default: ``test/12500.jpg``
is id ``12500``). Without one, the output is Dogs vs Cats' ``id,label`` with ``label``
the probability of the positive class.

Multi-label predictions (a ``labels`` column: ``path,labels,p_<label>...``) fill the
sample's second column with each id's labels, space-separated (Planet's
``image_name,tags``); without a sample the output is ``image_name,tags``.

Ids are compared as text with surrounding spaces removed, and whole numbers as numbers
(``12500``, ``" 12500"``, ``12500.0`` and ``012500`` are one id), because a sample
read or written by a spreadsheet or pandas often turns ``12500`` into ``12500.0``.

Every check fails the whole file with one line: a submission with a missing row or a
NaN is rejected by the competition anyway, after the upload. No TensorFlow here, so
``imgkit submit`` starts at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from imgkit.errors import BadInputError
from imgkit.evaluate.matching import prob_columns

ID_FROM = ("stem", "name", "path")
DEFAULT_COLUMNS = ("id", "label")
MULTILABEL_COLUMNS = ("image_name", "tags")  # Planet: Understanding the Amazon
# How many offending ids or rows an error message names before it just counts.
SHOW = 3
FLOAT_FORMAT = "%.6g"

_WHOLE_NUMBER = re.compile(r"[+-]?\d+(\.0*)?")


def id_of(path: str, how: str = "stem") -> str:
    """The submission id of a predicted path.

    Args:
        path: the path as the predictions CSV has it.
        how: "stem" (``data/test/12500.jpg`` -> ``12500``), "name" (``12500.jpg``)
            or "path" (the path as written).
    """
    if how == "path":
        return path
    if how not in ID_FROM:
        raise ValueError(f"id_from must be one of {ID_FROM} (got {how!r})")
    # Split on both separators: predictions made on Windows name files with "\\".
    name = re.split(r"[\\/]", path)[-1]
    if how == "name":
        return name
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def id_key(value) -> str:
    """What two ids are compared by: stripped text, whole numbers as canonical integers."""
    text = str(value).strip()
    if _WHOLE_NUMBER.fullmatch(text):
        return str(int(text.split(".")[0]))
    return text


def _examples(items, show: int = SHOW) -> str:
    items = list(items)
    more = ", ..." if len(items) > show else ""
    return ", ".join(str(i) for i in items[:show]) + more


def _check_unique(keys: list[str], shown: list[str], what: str) -> None:
    counts = pd.Series(keys).value_counts()
    dup = counts[counts > 1]
    if len(dup):
        first: dict[str, str] = {}
        for k, s in zip(keys, shown, strict=True):
            first.setdefault(k, s)
        examples = _examples(f"{first[k]} ({n} rows)" for k, n in dup.items())
        raise BadInputError(
            f"{what}: {len(dup)} id{'s appear' if len(dup) != 1 else ' appears'} more than once "
            f"({examples})"
        )


def probability_column(preds: pd.DataFrame, column: str | None = None, name: str = "") -> str:
    """Which ``p_`` column to submit.

    Args:
        preds: the predictions table.
        column: a column (``p_dog``) or class (``dog``) name; None for the default: the
            second of two ``p_`` columns, i.e. the positive class in the bundle's order
            (``p_dog`` for cat/dog).
        name: the predictions' file name, for messages.

    Raises:
        BadInputError: no such column, or no default (not exactly two classes).
    """
    pcols = prob_columns(preds)
    where = f"{name}: " if name else ""
    if column is not None:
        for candidate in (column, f"p_{column}"):
            if candidate in pcols:
                return candidate
        raise BadInputError(
            f"{where}no probability column {column!r} (the columns are {', '.join(pcols)})"
        )
    if len(pcols) != 2:
        listed = ", ".join(pcols) if pcols else "none"
        raise BadInputError(
            f"{where}{len(pcols)} probability columns ({listed}); name the one to submit "
            "with --column"
        )
    return pcols[1]


def probabilities(preds: pd.DataFrame, column: str, name: str = "") -> np.ndarray:
    """The column as float64 probabilities, checked.

    Raises:
        BadInputError: a value is missing, not a number, NaN, or outside [0, 1].
    """
    where = f"{name}: " if name else ""
    values = pd.to_numeric(preds[column], errors="coerce").to_numpy(dtype=np.float64)
    paths = preds["path"].tolist()
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        examples = _examples(f"{paths[i]}: {preds[column].iloc[i]!r}" for i in bad)
        raise BadInputError(
            f"{where}{len(bad)} value{'s' if len(bad) != 1 else ''} of {column} "
            f"{'are' if len(bad) != 1 else 'is'} missing or not a number (NaN) ({examples})"
        )
    bad = np.flatnonzero((values < 0) | (values > 1))
    if len(bad):
        examples = _examples(f"{paths[i]}: {values[i]:g}" for i in bad)
        raise BadInputError(
            f"{where}{len(bad)} value{'s' if len(bad) != 1 else ''} of {column} "
            f"{'are' if len(bad) != 1 else 'is'} outside [0, 1] ({examples})"
        )
    return values


@dataclass
class Submission:
    """A submission table and what went into it.

    Attributes:
        frame: the rows to write, with the output header as its columns.
        column: the predictions column the values came from.
        clip: the EPS values were clipped with, or None.
        clipped: how many values clipping changed.
    """

    frame: pd.DataFrame
    column: str
    clip: float | None = None
    clipped: int = 0

    def to_csv(self) -> str:
        """The submission as CSV text."""
        return self.frame.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")

    def describe(self) -> str:
        """One line for the user: rows, id range, mean probability, clipping."""
        ids = self.frame.iloc[:, 0].astype(str).tolist()
        if self.column == "labels":
            per_row = [len(str(v).split()) for v in self.frame.iloc[:, 1]]
            mean = float(np.mean(per_row)) if per_row else 0.0
            span = f"ids {ids[0]}..{ids[-1]}" if ids else "no ids"
            return f"{len(ids)} rows, {span}, {mean:.2f} labels per row (from labels)"
        values = self.frame.iloc[:, 1].to_numpy(dtype=np.float64)
        keys = [id_key(i) for i in ids]
        if keys and all(_WHOLE_NUMBER.fullmatch(k) for k in keys):
            numbers = [int(k) for k in keys]
            span = f"ids {min(numbers)}..{max(numbers)}"
        else:
            span = f"ids {ids[0]}..{ids[-1]}" if ids else "no ids"
        value_name = self.frame.columns[1]
        clip = (
            f"clipped to [{self.clip:g}, {1 - self.clip:g}] ({self.clipped} changed)"
            if self.clip is not None
            else "not clipped"
        )
        return (
            f"{len(ids)} rows, {span}, mean {value_name} {values.mean():.4f} "
            f"(from {self.column}), {clip}"
        )


def make_submission(
    preds: pd.DataFrame,
    sample: pd.DataFrame | None = None,
    column: str | None = None,
    id_from: str = "stem",
    clip: float | None = None,
    preds_name: str = "predictions",
    sample_name: str = "sample",
) -> Submission:
    """Build a submission from a predictions table.

    Args:
        preds: predictions (``path`` and ``p_<class>`` columns), cells as read.
        sample: the competition's sample submission (cells as strings), or None.
            Its first column is the id, its second the value to fill.
        column: the ``p_`` column (or class) to submit; see :func:`probability_column`.
        id_from: how a path gives its id: "stem", "name" or "path" (:func:`id_of`).
        clip: clip probabilities to ``[clip, 1 - clip]`` (log-loss competitions
            punish a confident mistake without limit); None to leave them.
        preds_name: the predictions' file name, for messages.
        sample_name: the sample's file name, for messages.

    Returns:
        With a sample: its header, ids and row order. Without: ``id,label`` with ids
        from the paths, sorted by number when all are whole numbers, otherwise in the
        predictions' order.

    Raises:
        BadInputError: no rows, duplicate, missing or extra ids, NaN or out-of-range
            values, a sample without two columns.
    """
    if "path" not in preds.columns:
        raise BadInputError(f"{preds_name}: no path column (got {list(preds.columns)})")
    if preds.empty:
        raise BadInputError(f"{preds_name}: no predictions (a header but no rows)")
    if "labels" in preds.columns and "label" not in preds.columns:
        if clip is not None or column is not None:
            raise BadInputError(
                f"{preds_name}: multi-label predictions submit their labels; "
                "--clip and --column are for probabilities"
            )
        return _label_sets(preds, sample, id_from, preds_name, sample_name)
    col = probability_column(preds, column, preds_name)
    values = probabilities(preds, col, preds_name)
    ids = [id_of(str(p), id_from) for p in preds["path"]]
    keys = [id_key(i) for i in ids]
    _check_unique(keys, ids, preds_name)

    if sample is None:
        frame = pd.DataFrame({DEFAULT_COLUMNS[0]: ids, DEFAULT_COLUMNS[1]: values})
        if all(_WHOLE_NUMBER.fullmatch(k) for k in keys):
            # A stable sort: ids that are one number keep their order (no two can, above).
            order = np.argsort([int(k) for k in keys], kind="stable")
            frame = frame.iloc[order].reset_index(drop=True)
    else:
        frame = _fill_sample(sample, dict(zip(keys, values, strict=True)), ids, sample_name)

    _check_one_line(frame, sample_name if sample is not None else preds_name)

    clipped = 0
    if clip is not None:
        if not 0 <= clip < 0.5:
            raise ValueError(f"clip must be in [0, 0.5) (got {clip})")
        v = frame.iloc[:, 1].to_numpy(dtype=np.float64)
        clipped = int(np.count_nonzero((v < clip) | (v > 1 - clip)))
        frame.iloc[:, 1] = np.clip(v, clip, 1 - clip)
    return Submission(frame, col, clip, clipped)


def _label_sets(preds, sample, id_from: str, preds_name: str, sample_name: str) -> Submission:
    """A multi-label submission: each id's labels, space-separated (empty when none)."""
    ids = [id_of(str(p), id_from) for p in preds["path"]]
    keys = [id_key(i) for i in ids]
    _check_unique(keys, ids, preds_name)
    labels = [" ".join(str(v).split()) for v in preds["labels"]]
    if sample is None:
        frame = pd.DataFrame({MULTILABEL_COLUMNS[0]: ids, MULTILABEL_COLUMNS[1]: labels})
    else:
        frame = _fill_sample(sample, dict(zip(keys, labels, strict=True)), ids, sample_name)
    _check_one_line(frame, sample_name if sample is not None else preds_name)
    return Submission(frame, "labels")


def _check_one_line(frame: pd.DataFrame, name: str) -> None:
    # The CSV writer quotes a cell holding "\n" but not one holding "\r", which would
    # then end the row early; neither belongs in an id or a column name anyway.
    cells = [*map(str, frame.columns), *frame.iloc[:, 0].astype(str)]
    broken = [c for c in cells if "\r" in c or "\n" in c]
    if broken:
        raise BadInputError(
            f"{name}: {len(broken)} id or column name(s) hold a line break, which a "
            f"submission file cannot ({_examples(map(repr, broken))})"
        )


def _fill_sample(
    sample: pd.DataFrame, by_key: dict[str, float], pred_ids: list[str], name: str
) -> pd.DataFrame:
    if sample.shape[1] != 2:
        raise BadInputError(
            f"{name}: a sample submission needs two columns, an id and a value "
            f"(got {sample.shape[1]}: {', '.join(map(str, sample.columns))})"
        )
    id_col, value_col = sample.columns
    sample_ids = sample[id_col].astype(str).tolist()
    sample_keys = [id_key(i) for i in sample_ids]
    _check_unique(sample_keys, sample_ids, name)

    wanted = set(sample_keys)
    missing = [i for i, k in zip(sample_ids, sample_keys, strict=True) if k not in by_key]
    extra = [i for i in pred_ids if id_key(i) not in wanted]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} id{'s' if len(missing) != 1 else ''} of the sample "
            f"{'have' if len(missing) != 1 else 'has'} no prediction ({_examples(missing)})"
        )
    if extra:
        problems.append(
            f"{len(extra)} predicted id{'s' if len(extra) != 1 else ''} "
            f"{'are' if len(extra) != 1 else 'is'} not in the sample ({_examples(extra)})"
        )
    if problems:
        raise BadInputError(f"{name}: " + "; ".join(problems))
    return pd.DataFrame(
        {id_col: sample[id_col].tolist(), value_col: [by_key[k] for k in sample_keys]}
    )
