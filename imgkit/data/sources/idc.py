"""Breast histopathology (IDC) patches, Kaggle's layout: one folder per patient.

::

    IDC/10253/0/10253_idx5_x1001_y1001_class0.png
    IDC/10253/1/10253_idx5_x501_y351_class1.png
    IDC/8863/0/...

The label is the ``0``/``1`` folder; a file name that says ``class<N>`` is checked
against it, and a file whose name and folder disagree is rejected (which one is right
cannot be told, and a wrong label in training is worse than a missing patch). The
group is the patient folder, so prep keeps each patient's patches in one split:
patches of one patient share staining, scanner and tissue, and a split that puts one
patient on both sides measures memory of the patient, not diagnosis.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imgkit.data.images import (
    HIDDEN_FOLDER_REASON,
    HIDDEN_REASON,
    SKIPPED,
    is_hidden,
    list_images,
    not_image_reason,
)
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import SourceContext, SourceResult, absolute

NAME = "idc"
DESCRIPTION = (
    "a breast histopathology (IDC) folder: <patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<N>.png "
    "(label from the 0/1 folder, group = patient)"
)
CLASS_DIRS = ("0", "1")
# The class a Kaggle IDC patch name states: ..._class0.png / ..._class1.png.
_NAME_CLASS = re.compile(r"_class(\d+)\.[^.]+$", re.IGNORECASE)
MISMATCH = "label mismatch"


def _dirs(folder: Path) -> list[os.DirEntry]:
    try:
        return sorted((e for e in os.scandir(folder) if e.is_dir()), key=lambda e: e.name)
    except OSError:
        return []


def _is_patient(folder: Path) -> bool:
    """A patient folder: its visible subfolders are all class folders (0 or 1), and some."""
    names = [e.name for e in _dirs(folder) if not is_hidden(e.name)]
    return bool(names) and set(names) <= set(CLASS_DIRS)


def matches(spec: str) -> bool:
    """A folder whose visible subfolders are all patient folders (and there is one)."""
    root = Path(spec)
    if not root.is_dir():
        return False
    patients = [Path(e.path) for e in _dirs(root) if not is_hidden(e.name)]
    return bool(patients) and all(_is_patient(p) for p in patients)


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Take every patch below ``<patient>/<0|1>/``, labelled by the folder, grouped by patient."""
    root = Path(spec)
    records: list[Record] = []
    rejects: list[Reject] = []
    empty: list[str] = []
    unnamed = 0
    patients = 0
    for patient in sorted(os.scandir(root), key=lambda e: e.name):
        path = absolute(patient.path)
        if is_hidden(patient.name):
            rejects.append(
                Reject(path, HIDDEN_FOLDER_REASON if patient.is_dir() else HIDDEN_REASON)
            )
            continue
        if not patient.is_dir():
            rejects.append(Reject(path, f"{SKIPPED}: file not inside a patient folder"))
            continue
        patients += 1
        for entry in sorted(os.scandir(patient.path), key=lambda e: e.name):
            epath = absolute(entry.path)
            if is_hidden(entry.name):
                hidden = HIDDEN_FOLDER_REASON if entry.is_dir() else HIDDEN_REASON
                rejects.append(Reject(epath, hidden))
            elif not entry.is_dir():
                rejects.append(
                    Reject(epath, f"{SKIPPED}: file not inside a class folder (0 or 1)")
                    if entry.name.lower().endswith(".png")
                    else Reject(epath, not_image_reason(entry.name))
                )
            else:
                taken, bad, n_unnamed = _class_folder(Path(entry.path), patient.name)
                records.extend(taken)
                rejects.extend(bad)
                unnamed += n_unnamed
                if not taken:
                    empty.append(f"{patient.name}/{entry.name}")
                    rejects.append(Reject(epath, f"{SKIPPED}: class folder with no images"))
    warnings = []
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        warnings.append(f"{len(empty)} empty class folder(s): {shown}")
    if unnamed:
        warnings.append(
            f"{unnamed} image(s) without a class<N> in the name: labelled by their folder only"
        )
    mismatched = sum(1 for r in rejects if r.reason.startswith(MISMATCH))
    if mismatched:
        warnings.append(
            f"{mismatched} image(s) whose folder and name disagree on the class were rejected "
            "(see rejects.csv)"
        )
    n_pos = sum(1 for r in records if r.label == "1")
    share = f", {n_pos / len(records):.1%} positive" if records else ""
    description = (
        f"IDC patches in {root.resolve()} ({patients} patients, {len(records)} patches{share})"
    )
    return SourceResult(records, rejects, description=description, warnings=warnings)


def _class_folder(folder: Path, patient: str) -> tuple[list[Record], list[Reject], int]:
    """The patches of one ``<patient>/<0|1>`` folder: (records, rejects, names without class)."""
    label = folder.name
    paths, bad = list_images(folder)
    rejects = [Reject(absolute(r.path), r.reason) for r in bad]
    records: list[Record] = []
    unnamed = 0
    for p in paths:
        m = _NAME_CLASS.search(p.name)
        if m is None:
            unnamed += 1
        elif m.group(1) != label:
            rejects.append(
                Reject(
                    absolute(p),
                    f"{MISMATCH} (in folder {label!r} but the name says class{m.group(1)}; "
                    "which is right cannot be told)",
                )
            )
            continue
        records.append(Record(absolute(p), label=label, group=patient))
    return records, rejects, unnamed
