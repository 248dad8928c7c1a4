"""Datasets made from a dataset and predictions, without reading an image again.

Two things ``imgkit prep`` does to what it already has:

- **Folds** (``prep DATA --folds K``): every labelled image of DATA but its test split
  (and pseudo-labels) gets a fold 1..K (:func:`imgkit.data.folds.assign_folds`); DATA's
  val split joins the folds, since each fold is in turn the validation.
- **Pseudo-labels** (``prep PREDICTIONS.csv --pseudo --min-confidence P``, alone or
  with DATA): each prediction at least P confident becomes a training row labelled
  with the predicted class and marked ``pseudo`` in the manifest, so training uses it
  and nothing validates or scores on it. Multi-label predictions are taken only when
  every label is decided (:mod:`imgkit.data.pseudo_multilabel`).

The new manifest points at the images where they are (paths relative to the new
folder). Given DATA itself as the output (with ``overwrite``), the folder is changed in
place: its new rejects.csv, manifest.csv and dataset.json are written beside the old
ones and renamed over them, manifest first (manifest.csv is the truth about folds).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imgkit.data.dataset import CACHE_DIR, INFO, MANIFEST, REJECTS, Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.folds import FOLDED_SPLIT, fold_records
from imgkit.data.grouping import split_balance
from imgkit.data.prep_output import summarize
from imgkit.data.records import Record, Reject
from imgkit.errors import BadInputError, OutputExistsError
from imgkit.fileio import atomic_dir


@dataclass(frozen=True)
class Derivation:
    """What to do to the rows: folds (K, or None to keep DATA's), pseudo-labels
    (``allow_empty``: take a multi-label image whose every label is decided absent)."""

    folds: int | None = None
    seed: int = 0
    predictions: tuple[str, ...] = ()
    min_confidence: float = 0.9
    allow_empty: bool = False


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder made by ``imgkit prep``."""
    p = Path(path)
    return (p / MANIFEST).is_file() and (p / INFO).is_file()


def _records(ds: Dataset) -> list[Record]:
    """DATA's manifest rows as records with absolute paths."""
    m = ds.manifest
    multilabel = ds.task == "multilabel"
    out = []
    for i in range(len(m)):
        row = m.iloc[i]

        def cell(name, row=row):
            return row[name] if name in m.columns and row[name] != "" else None

        mask = cell("mask")
        # A multi-label image with no label (--allow-empty) is labelled, with none.
        labelled = multilabel and row["split"] != "unlabeled"
        out.append(
            Record(
                str(ds.abspath(row["path"]).resolve()),
                label=row["label"] if labelled else cell("label"),
                group=cell("group"),
                split=row["split"],
                mask=str(ds.abspath(mask).resolve()) if mask else None,
                fold=int(cell("fold")) if cell("fold") else None,
                pseudo=cell("pseudo") == "1",
            )
        )
    return out


def _resolve_listed(path: str, csv_path: Path) -> Path | None:
    """A predictions CSV's path: absolute, else relative to the CSV or the current folder."""
    p = Path(path)
    for candidate in [p] if p.is_absolute() else [csv_path.parent / p, Path.cwd() / p]:
        if candidate.is_file():
            return candidate.resolve()
    return None


def _read_predictions(csv_path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError) as e:
        raise BadInputError(f"{csv_path}: cannot read the predictions ({e})") from e


def pseudo_records(
    csv_path: str | os.PathLike, min_confidence: float, classes: list[str] | None
) -> tuple[list[Record], list[Reject]]:
    """The confident rows of a predictions CSV as pseudo-labelled training records.

    Raises:
        BadInputError: not a predictions CSV, or a label outside ``classes``.
    """
    csv_path = Path(csv_path)
    return _single_label(_read_predictions(csv_path), csv_path, min_confidence, classes)


def _single_label(df: pd.DataFrame, csv_path: Path, min_confidence: float, classes):
    missing = {"path", "label", "confidence"} - set(df.columns)
    if missing:
        raise BadInputError(
            f"{csv_path}: not a predictions CSV (no {', '.join(sorted(missing))} column; "
            "make one with `imgkit predict`)"
        )
    unknown = sorted(set(df["label"]) - set(classes)) if classes is not None else []
    if unknown:
        raise BadInputError(
            f"{csv_path}: predicted labels {unknown[:5]} are not classes of the dataset {classes}"
        )
    confidences = pd.to_numeric(df["confidence"], errors="coerce")
    if confidences.isna().any():
        raise BadInputError(f"{csv_path}: the confidence column holds something not a number")
    records, rejects = [], []
    for path, label, confidence in zip(df["path"], df["label"], confidences, strict=True):
        found = _resolve_listed(path, csv_path)
        if found is None:
            rejects.append(Reject(path, "pseudo-label: file not found"))
        elif float(confidence) < min_confidence:
            rejects.append(Reject(path, f"skipped: pseudo-label confidence below {min_confidence}"))
        else:
            records.append(Record(str(found), label=label, split=FOLDED_SPLIT, pseudo=True))
    return records, rejects


def _merge(records: list[Record], pseudo: list[Record]) -> tuple[list[Record], list[Reject]]:
    """Pseudo-labelled records not already in the dataset (a test image stays test)."""
    have = {r.path for r in records}
    kept, rejects = [], []
    for r in pseudo:
        if r.path in have:
            rejects.append(Reject(r.path, "skipped: pseudo-label of an image already listed"))
        else:
            have.add(r.path)
            kept.append(r)
    return records + kept, rejects


def derive(
    base: str | os.PathLike | None,
    output: str | os.PathLike,
    how: Derivation,
    *,
    overwrite: bool = False,
) -> dict:
    """Write a dataset folder from ``base`` (or none) with folds and pseudo-labels.

    Args:
        base: a dataset folder, or None for a dataset of pseudo-labels only.
        output: the folder to write; ``base`` itself (with ``overwrite``) changes it in place.
        how: the folds and the pseudo-labels to add.
        overwrite: replace ``output`` if it is a dataset folder already.

    Returns:
        What :func:`imgkit.data.prep.prepare` returns: dataset.json's content, ``path``,
        the rejects' counts and ``warnings``.

    Raises:
        OutputExistsError: ``output`` exists and ``overwrite`` is off, or is no dataset.
        BadInputError: too few images for the folds, a bad predictions CSV.
    """
    output = Path(output)
    ds = Dataset.load(base) if base is not None else None
    records = _records(ds) if ds is not None else []
    rejects: list[Reject] = []
    if ds is not None and (ds.root / REJECTS).is_file():
        old = pd.read_csv(ds.root / REJECTS, dtype=str, keep_default_na=False)
        rejects = [Reject(p, r) for p, r in zip(old["path"], old["reason"], strict=True)]
    task = ds.task if ds is not None else None
    classes = ds.classes if ds is not None else None
    for csv_path in map(Path, how.predictions):
        pseudo, skipped, task, classes = _pseudo(csv_path, how, task, classes, base)
        records, duplicates = _merge(records, pseudo)
        rejects += skipped + duplicates
    task = task or "classification"
    if how.folds is not None:
        segmentation = task == "segmentation"
        multilabel = task == "multilabel"
        records = fold_records(records, how.folds, how.seed, segmentation, multilabel)
    if not records:
        raise BadInputError(
            f"no images for {output}: no prediction reached --min-confidence {how.min_confidence}"
        )
    in_place = ds is not None and output.resolve() == ds.root.resolve()
    _check_target(output, overwrite)
    sources = [str(base)] if base is not None else []
    info_args = dict(
        task=task,
        source=sources + list(how.predictions),
        seed=how.seed,
        final_folder=output,
        extra={"derived_from": sources, **_balance(task, records), **_mask_info(ds)},
    )
    if in_place:
        info = _write_in_place(ds, records, rejects, info_args)
    else:
        info = _write_new(output, records, rejects, info_args)
    return summarize(info, output, rejects, [], _notes(records))


def _mask_info(ds: Dataset | None) -> dict:
    """DATA's multi-class mask classes, colours and ignore value: the masks are the same
    files, read the same way (without them they would be read as binary masks)."""
    from imgkit.data.classmasks import MASK_INFO_KEYS

    if ds is None:
        return {}
    return {key: ds.info[key] for key in MASK_INFO_KEYS if key in ds.info}


def _pseudo(csv_path: Path, how: Derivation, task, classes, base):
    """One predictions CSV's pseudo-labels for a dataset of ``task`` and ``classes``
    (None: as the CSV's): (records, rejects, the task, the classes)."""
    from imgkit.data.pseudo_multilabel import is_multilabel_predictions, multilabel_pseudo_records

    df = _read_predictions(csv_path)
    kind = "multilabel" if is_multilabel_predictions(df) else "classification"
    if task not in (None, kind):
        where = base if base is not None else "the other predictions"
        raise BadInputError(
            f"{csv_path}: {kind} predictions cannot add pseudo-labels to {where} ({task})"
        )
    if kind == "classification":
        records, rejects = _single_label(df, csv_path, how.min_confidence, classes)
        return records, rejects, kind, classes

    def resolve(path):
        return _resolve_listed(path, csv_path)

    records, rejects, labels = multilabel_pseudo_records(
        df, csv_path, how.min_confidence, classes, how.allow_empty, resolve
    )
    return records, rejects, kind, classes if classes is not None else labels


def _balance(task: str, records: list[Record]) -> dict:
    """dataset.json's split (and label) counts, as prep writes them for the task."""
    if task == "multilabel":
        from imgkit.data.multisplit import label_balance

        return label_balance(records)
    return split_balance(records)


def _check_target(output: Path, overwrite: bool) -> None:
    if not output.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{output} already exists (pass --overwrite to replace it)")
    if not is_dataset(output) and (not output.is_dir() or any(output.iterdir())):
        raise OutputExistsError(
            f"{output} exists and is not a dataset folder; --overwrite replaces only dataset "
            "folders made by imgkit prep, so choose another output"
        )


def _write_new(output: Path, records, rejects, info_args) -> dict:
    staging = output.with_name(f".{output.name}.new-{secrets.token_hex(4)}")
    with atomic_dir(staging) as workdir:
        info = write_dataset(workdir, records, rejects, **info_args)
    if output.exists():
        old = output.with_name(f".{output.name}.old-{secrets.token_hex(4)}")
        os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output)
    return info


def _write_in_place(ds: Dataset, records, rejects, info_args) -> dict:
    """The three files written in a hidden folder inside DATA, then renamed over the old."""
    old_hash = ds.hash
    staging = Path(tempfile.mkdtemp(prefix=".derive-", dir=ds.root))
    try:
        info = write_dataset(staging, records, rejects, **info_args)
        for name in (REJECTS, MANIFEST, INFO):
            os.replace(staging / name, ds.root / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The old manifest's decoded images are named by its hash: nothing reads them now.
    for stale in (ds.root / CACHE_DIR).glob(f"*-{old_hash}.npy"):
        stale.unlink(missing_ok=True)
    return info


def _notes(records: list[Record]) -> list[str]:
    folded = [r for r in records if r.fold is not None]
    notes = []
    if folded:
        counts = pd.Series([r.fold for r in folded]).value_counts().sort_index()
        notes.append(
            f"{len(counts)} folds of {counts.min()}-{counts.max()} images "
            f"({len(folded)} in all; validation of each fold's run is its fold)"
        )
    pseudo = sum(1 for r in records if r.pseudo)
    if pseudo:
        notes.append(f"{pseudo} pseudo-labelled images train in every run, never validate")
    return notes
