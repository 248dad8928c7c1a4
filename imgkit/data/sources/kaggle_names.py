"""A folder of images labelled by file name, Kaggle style: ``cat.12.jpg``, ``dog.7.JPG``.

The rule, applied to the names of all image files in the folder (hidden and non-image
files are skipped first):

- A name ``<label>.<id>.<ext>``, where the label starts with a letter and holds
  letters, digits, ``_`` or ``-``, and the id is a number (:data:`LABELLED_NAME`),
  gets the label. Labels keep their case (``Cat`` and ``cat`` are two classes).
- By default (``name_labels`` None) the folder is labelled by name when there are at
  least two labels and every name matches, allowing 1 non-matching file per 100
  (a folder of under 100 images must match entirely); each non-matching file is then
  rejected with the reason. One label only (``cat.1.jpg``, ``cat.2.jpg``: possibly
  frames of one video) is not guessed: it takes ``name_labels=True``.
- Otherwise the folder is read as unlabeled images (split "unlabeled"), with a
  warning when some names looked like labels, saying how to label them.
- ``name_labels=True`` (``--name-labels``): labelled by name whenever any name
  matches; the others are rejected. ``name_labels=False`` (``--no-name-labels``):
  never; the images are unlabeled.

Kaggle test sets (``1.jpg`` ... ``12500.jpg``) match no label and are read as unlabeled
by :mod:`imgkit.data.sources.plain_folder`; ``imgkit submit`` takes the id from the file
name, so the manifest needs nothing more.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from imgkit.data.images import SKIPPED, has_image_extension, is_hidden, list_images
from imgkit.data.records import Record, Reject
from imgkit.data.sources import plain_folder
from imgkit.data.sources.base import SourceContext, SourceResult, absolute

NAME = "kaggle-names"
DESCRIPTION = (
    "a folder of images named <label>.<id>.<ext> (cat.12.jpg, dog.7.jpg; the label is "
    "the name's first part)"
)

LABELLED_NAME = re.compile(r"^(?P<label>[A-Za-z][\w-]*)\.(?P<id>\d+)\.(?P<ext>[A-Za-z0-9]+)$")
# Strays allowed in an automatically name-labelled folder: one per this many images.
STRAYS_PER = 100

NOT_NAMED_REASON = (
    f"{SKIPPED}: file name is not <label>.<id>.<ext> (like cat.12.jpg), in a folder "
    "labelled by file names"
)


def name_label(name: str) -> str | None:
    """The label of a ``<label>.<id>.<ext>`` image file name, or None."""
    m = LABELLED_NAME.match(name)
    return m["label"] if m and has_image_extension(name) else None


def decide(names: list[str], name_labels: bool | None = None) -> tuple[bool, str | None]:
    """Whether a folder with these image file names is labelled by name.

    Args:
        names: the image file names (not paths) in the folder.
        name_labels: True to label by name whenever any name matches, False never,
            None to decide by the rule in this module's docstring.

    Returns:
        ``(labelled, warning)``: the warning (or None) says why names that look like
        labels were not used, and how to use them.
    """
    labels = Counter(label for label in map(name_label, names) if label is not None)
    matched = sum(labels.values())
    if name_labels is False or matched == 0:
        return False, None
    if name_labels:
        return True, None
    strays = len(names) - matched
    if len(labels) >= 2 and strays <= len(names) // STRAYS_PER:
        return True, None
    if len(labels) == 1:
        label = next(iter(labels))
        why = f"all {matched} image names are {label}.<id> (one label, {label!r})"
        if strays:
            why = f"{matched} of {len(names)} image names are {label}.<id> (one label)"
        return False, (
            f"{why}: taken as unlabeled; pass --name-labels to label them {label!r} "
            "(with another source for the other classes)"
        )
    return False, (
        f"only {matched} of {len(names)} image names look like <label>.<id>.<ext> "
        f"({len(labels)} labels): taken as unlabeled; pass --name-labels to label those "
        "by name and reject the others"
    )


def _top_level_names(folder: Path) -> list[str]:
    return [
        e.name
        for e in os.scandir(folder)
        if not is_hidden(e.name) and has_image_extension(e.name) and not e.is_dir()
    ]


def matches(spec: str) -> bool:
    """A folder with at least one image named like ``cat.12.jpg`` at its top level.

    It is tried after the class-folder reader, so it sees only folders without class
    subfolders; whether the names are really used is decided in :func:`read`.
    """
    folder = Path(spec)
    return folder.is_dir() and any(name_label(n) for n in _top_level_names(folder))


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Label each image by the first part of its name, or read the folder as unlabeled."""
    root = Path(spec)
    paths, bad = list_images(root)
    labelled, warning = decide([p.name for p in paths], ctx.name_labels)
    if not labelled:
        result = plain_folder.read(spec, ctx)
        if warning:
            result.warnings.append(warning)
        return result
    records: list[Record] = []
    rejects = [Reject(absolute(r.path), r.reason) for r in bad]
    for p in paths:
        label = name_label(p.name)
        if label is None:
            rejects.append(Reject(absolute(p), NOT_NAMED_REASON))
        else:
            records.append(Record(absolute(p), label=label))
    n_labels = len({r.label for r in records})
    description = f"images named <label>.<id> in {root.resolve()} ({n_labels} classes)"
    return SourceResult(records, rejects, description=description)
