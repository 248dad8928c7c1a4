"""A folder of images without class subfolders: unlabeled images (split "unlabeled").

Useful for predicting on a dataset split, or for a test set whose labels come later.
"""

from __future__ import annotations

from pathlib import Path

from imgkit.data.images import list_images
from imgkit.data.records import Record, Reject
from imgkit.data.sources.base import SourceContext, SourceResult, absolute

NAME = "unlabeled-folder"
DESCRIPTION = "a folder of images with no class subfolders (taken as unlabeled)"


def matches(spec: str) -> bool:
    return Path(spec).is_dir()


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Take every image below the folder, unlabeled."""
    paths, bad = list_images(spec)
    records = [Record(absolute(p), label=None, split="unlabeled") for p in paths]
    rejects = [Reject(absolute(r.path), r.reason) for r in bad]
    return SourceResult(records, rejects, description=f"unlabeled images in {Path(spec).resolve()}")
