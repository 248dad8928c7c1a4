"""A folder with one subfolder per class: ``photos/cats/*.jpg``, ``photos/dogs/*.jpg``.

The label is the name of the top-level subfolder; images nested deeper
(``cats/indoor/1.jpg``) belong to that top class.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgkit.data.images import (
    HIDDEN_FOLDER_REASON,
    HIDDEN_REASON,
    SKIPPED,
    has_image_extension,
    is_hidden,
    list_images,
    not_image_reason,
)
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import SourceContext, SourceResult, absolute

NAME = "class-folders"
DESCRIPTION = "a folder with one subfolder of images per class (the label is the subfolder name)"


def _subfolders(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not is_hidden(e.name))


def _has_image(folder: Path) -> bool:
    for _, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        if any(has_image_extension(f) and not is_hidden(f) for f in files):
            return True
    return False


def matches(spec: str) -> bool:
    folder = Path(spec)
    return folder.is_dir() and any(_has_image(sub) for sub in _subfolders(folder))


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Take every image below each class subfolder, labelled with that subfolder's name."""
    root = Path(spec)
    records: list[Record] = []
    rejects: list[Reject] = []
    classes = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = absolute(entry.path)
        if is_hidden(entry.name):
            rejects.append(Reject(path, HIDDEN_FOLDER_REASON if entry.is_dir() else HIDDEN_REASON))
        elif entry.is_dir():
            paths, bad = list_images(entry.path)
            rejects.extend(Reject(absolute(r.path), r.reason) for r in bad)
            if not paths:
                rejects.append(Reject(path, f"{SKIPPED}: class folder with no images"))
                continue
            classes.append(entry.name)
            records.extend(Record(absolute(p), label=entry.name) for p in paths)
        elif entry.is_symlink() and not Path(entry.path).exists():
            rejects.append(
                Reject(path, f"broken symbolic link (points to {os.readlink(entry.path)})")
            )
        elif has_image_extension(entry.name):
            # Not guessed into a class: a loose image here is most likely a mistake.
            rejects.append(Reject(path, f"{SKIPPED}: image not inside a class subfolder"))
        else:
            rejects.append(Reject(path, not_image_reason(entry.name)))
    description = f"class folders in {root.resolve()} ({len(classes)} classes)"
    return SourceResult(records, rejects, description=description)
