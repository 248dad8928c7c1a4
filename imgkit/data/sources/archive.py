"""A zip or tar archive: extracted safely, then read like the folder it unpacks to.

The image files are extracted into the dataset being built, under
``images/<archive name>/`` (see :mod:`imgkit.data.sources.extract` for what is refused and
the size limits). A single top-level folder is packaging, not a class (Kaggle's
``train.zip`` holds ``train/cat.0.jpg ...``), so reading starts inside it. The folder
found there is then read by the first folder reader that matches: class subfolders
(:mod:`~imgkit.data.sources.class_folders`), Kaggle-style names
(:mod:`~imgkit.data.sources.kaggle_names`), or else unlabeled images
(:mod:`~imgkit.data.sources.plain_folder`). The archive itself is only read.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from imgkit.data.records import Reject
from imgkit.data.sources import class_folders, idc, kaggle_names, plain_folder
from imgkit.data.sources.archive_names import archive_stem, archive_suffix
from imgkit.data.sources.base import SourceContext, SourceResult
from imgkit.data.sources.extract import extract_images

NAME = "archive"
DESCRIPTION = (
    "a zip or tar archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) of any folder "
    "layout here, extracted safely"
)

# Tried in this order on the extracted folder; the last matches any folder.
FOLDER_READERS = (idc, class_folders, kaggle_names, plain_folder)


def matches(spec: str) -> bool:
    path = Path(spec)
    return archive_suffix(path) is not None and path.is_file()


def unwrap(folder: Path) -> Path:
    """Go down through folders that are the only entry of their parent."""
    while True:
        entries = list(os.scandir(folder))
        if len(entries) != 1 or not entries[0].is_dir(follow_symlinks=False):
            return folder
        folder = Path(entries[0].path)


def folder_reader(folder: Path):
    """The reader module for an extracted folder (see :data:`FOLDER_READERS`)."""
    return next(r for r in FOLDER_READERS if r.matches(str(folder)))


def read(spec: str, ctx: SourceContext) -> SourceResult:
    """Extract the archive's images, then read them as the folder layout they form."""
    archive = Path(spec)
    dest = ctx.image_dir(f"images/{archive_stem(archive)}")
    task = f"extracting {archive.name}"
    written, rejects = extract_images(
        archive, dest, progress=lambda advance, total: ctx.report(task, advance, total)
    )
    root = unwrap(dest)
    reader = folder_reader(root)
    inner = reader.read(str(root), ctx)

    # Records name files below the dataset folder, relative to it, as other readers'
    # extracted images do; what was not taken is named as the archive member it was.
    workdir = Path(os.path.realpath(ctx.workdir))
    real_dest = Path(os.path.realpath(dest))
    label = archive.resolve().as_posix()

    def record_path(path: str) -> str:
        p = Path(path)
        return p.relative_to(workdir).as_posix() if p.is_relative_to(workdir) else path

    def member_name(path: str) -> str:
        p = Path(path)
        if not p.is_relative_to(real_dest):
            return path
        return f"{label}:{p.relative_to(real_dest).as_posix()}"

    records = [replace(r, path=record_path(r.path)) for r in inner.records]
    rejects += [Reject(member_name(r.path), r.reason) for r in inner.rejects]
    classes = len({r.label for r in records if r.label})
    layout = f"{classes} classes" if classes else "unlabeled"
    description = (
        f"archive {label}: {len(written)} images extracted, read as {reader.NAME} ({layout})"
    )
    return SourceResult(records, rejects, description=description, warnings=inner.warnings)
