"""Archive names: which files are archives, and which member names are safe to write.

A member name is refused when it is absolute, carries a drive letter, climbs out with
'..', holds a NUL or a line break, or is empty; everything here is plain string work, no
file is opened."""

from __future__ import annotations

import os
import re
from pathlib import Path, PureWindowsPath

# Longest suffixes first, so "x.tar.gz" is not taken for a ".gz" file.
ARCHIVE_SUFFIXES = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tbz2",
    ".tbz",
    ".txz",
    ".tar",
    ".zip",
)


_DRIVE = re.compile(r"^[A-Za-z]:")


_EMPTY = "empty name"


def archive_suffix(path: str | os.PathLike) -> str | None:
    """The archive suffix of a file name (``.tar.gz``, ``.zip``, ...), or None."""
    name = Path(path).name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if name.endswith(s) and name != s), None)


def archive_stem(path: str | os.PathLike) -> str:
    """A safe folder name for an archive's images: its name less the archive suffix."""
    name = Path(path).name
    suffix = archive_suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    # The stem names a folder below the dataset: nothing that could climb or hide.
    stem = re.sub(r"[^\w.-]", "_", stem).lstrip(".")
    return stem or "archive"


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def unsafe_path_reason(name: str) -> str | None:
    """Why a member name may not be extracted, or None when it is a plain relative path.

    Backslashes count as separators, since archives made on Windows use them.
    """
    text = name.replace("\\", "/")
    if "\0" in text:
        return "name contains a NUL character"
    if "\r" in text or "\n" in text:
        # manifest.csv could not hold it: a carriage return is written unquoted there.
        return "name contains a line break"
    if text.startswith("/") or _DRIVE.match(text) or PureWindowsPath(name).anchor:
        return "absolute path"
    if ".." in text.split("/"):
        return "path with a '..' component, which could land outside the extraction folder"
    if not [part for part in text.split("/") if part not in ("", ".")]:
        return _EMPTY
    return None


def _parts(name: str) -> list[str]:
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
