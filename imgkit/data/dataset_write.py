"""Writing a dataset folder's files: manifest.csv, dataset.json and rejects.csv.

The format is described in :mod:`imgkit.data.dataset`, which reads it; ``imgkit prep``
and the datasets derived from another (:mod:`imgkit.data.derive`) write it here.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from imgkit import __version__
from imgkit.data.dataset import INFO, MANIFEST, REJECTS, SPLITS, label_set
from imgkit.data.records import Record, Reject
from imgkit.fileio import write_csv, write_text


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return p.as_posix()


def write_dataset(
    folder: str | os.PathLike,
    records: Iterable[Record],
    rejects: Iterable[Reject],
    *,
    task: str = "classification",
    source: str | list[str] = "",
    seed: int = 0,
    final_folder: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> dict:
    """Write manifest.csv, dataset.json and rejects.csv into ``folder``.

    Args:
        folder: where to write (possibly a temporary folder renamed later).
        records: the images taken, with their splits assigned.
        rejects: the inputs not taken.
        task: "classification", "multilabel" or "segmentation".
        source: what prep read, for the record.
        seed: the seed used for the splits.
        final_folder: the folder's final location, if ``folder`` is temporary; absolute
            record paths are written relative to it.
        extra: more keys for dataset.json.

    Returns:
        The dataset.json content.
    """
    folder = Path(folder)
    root = Path(final_folder) if final_folder is not None else folder
    records = list(records)
    rows = []
    for r in records:
        row = {"path": _relative(r.path, root), "label": r.label or "", "split": r.split}
        if r.group is not None:
            row["group"] = r.group
        if r.mask is not None:
            row["mask"] = _relative(r.mask, root)
        row["fold"] = str(r.fold) if r.fold is not None else ""
        row["pseudo"] = "1" if r.pseudo else ""
        rows.append(row)
    columns = ["path", "label", "split"]
    for name, present in (
        ("group", any(r.group is not None for r in records)),
        ("mask", any(r.mask is not None for r in records)),
        ("fold", any(r.fold is not None for r in records)),
        ("pseudo", any(r.pseudo for r in records)),
    ):
        if present:
            columns.append(name)
    manifest = pd.DataFrame(rows, columns=columns)

    def names(r: Record) -> list[str]:
        if task == "multilabel":
            # An image with no label (--allow-empty) counts for none; unlabeled ones
            # count under "" as in any dataset.
            return label_set(r.label) or ([""] if r.label is None else [])
        return [r.label or ""]

    def tally(part: list[Record]) -> dict[str, int]:
        c = Counter(name for r in part for name in names(r))
        return {k: c[k] for k in sorted(c)}

    classes = sorted({name for r in records for name in names(r) if name})
    counts = {s: tally(p) for s in SPLITS if (p := [r for r in records if r.split == s])}
    info = {
        "task": task,
        "classes": classes,
        "counts": counts,
        "images": len(records),
        "rejected": 0,
        "source": source,
        "seed": seed,
        "created_by": f"imgkit {__version__}",
    }
    folds = sorted({r.fold for r in records if r.fold is not None})
    if folds:
        info["folds"] = len(folds)
        # Per label for multi-label data, as ``counts``: what the folds stratify.
        info["fold_counts"] = {str(k): tally([r for r in records if r.fold == k]) for k in folds}
    if any(r.pseudo for r in records):
        info["pseudo"] = sum(1 for r in records if r.pseudo)
    if extra:
        info.update(extra)
    rejects_df = pd.DataFrame([(r.path, r.reason) for r in rejects], columns=["path", "reason"])
    info["rejected"] = len(rejects_df)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(manifest, folder / MANIFEST)
    write_csv(rejects_df, folder / REJECTS)
    write_text(folder / INFO, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info
