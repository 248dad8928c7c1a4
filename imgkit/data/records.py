"""The two facts prep records about each input file: taken (a Record) or not (a Reject).

Kept apart from :mod:`imgkit.data.dataset` so that image listing
(:mod:`imgkit.data.images`) and the source readers can make them without importing
the dataset folder's code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Record:
    """One image taken into a dataset.

    Attributes:
        path: absolute path of a file outside the dataset folder, or a path relative to
            the dataset folder for a file prep wrote there (``images/...``).
        label: class name, or None when unlabeled.
        group: images that must stay in one split (a patient, a source photo).
        split: a fixed split (an official test set, unlabeled images), else None.
        mask: the mask path for segmentation, in the same form as ``path``.
        fold: the cross-validation fold (1..K) of a labelled image in a dataset made
            with ``--folds``, else None.
        pseudo: its label is a model's confident prediction (``prep --pseudo``), not
            the truth: it trains, and is never validated or scored on.
    """

    path: str
    label: str | None = None
    group: str | None = None
    split: str | None = None
    mask: str | None = None
    fold: int | None = None
    pseudo: bool = False


@dataclass
class Reject:
    """An input file that was not taken, and why (one row of rejects.csv)."""

    path: str
    reason: str
