"""Atomic file output: write to a temporary name, rename when complete.

A crash, a Ctrl-C or a full disk never leaves a half-written CSV, mask or model under
its final name: readers see either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _named(error: BaseException, path: Path, tmp: Path | None = None) -> BaseException:
    """An OS error about a temporary name (or none) told about the output the user named.

    Inside a temporary folder ``tmp`` the file keeps its place under ``path``.
    """
    if not isinstance(error, OSError) or error.errno is None:
        return error
    name = None if error.filename is None else str(error.filename)
    if tmp is not None and name is not None and name.startswith(str(tmp) + os.sep):
        name = str(path / os.path.relpath(name, tmp))
    elif name is None or ".part" in os.path.basename(name):
        name = str(path)
    if name == error.filename:
        return error
    return type(error)(error.errno, error.strerror, name)


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    # The temporary file lives beside the target so the final rename stays on one
    # file system (os.replace is atomic only there).
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); outputs should get the permissions any
    # other new file would (0666 less the umask), so others can read a shared result.
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the target's extension (some writers, like Keras and
    matplotlib, choose the format from it). On an exception the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(path, suffix="".join(path.suffixes[-1:]))
    except OSError as e:
        named = _named(e, path)
        if named is e:
            raise
        raise named from e
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        named = _named(e, path)
        if named is e:
            raise
        raise named from e


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file for writing; rename it to ``path`` when the block ends."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8) and return the path."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def write_csv(df, path: str | os.PathLike) -> Path:
    """Write a DataFrame as CSV (no index) atomically and return the path."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        df.to_csv(f, index=False)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name; move it to ``path`` when complete.

    ``path`` must not exist yet (callers check and say so first). On an exception the
    partial folder is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    except OSError as e:
        named = _named(e, path)
        if named is e:
            raise
        raise named from e
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a shared dataset or bundle
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _named(e, path, tmp)
        if named is e:
            raise
        raise named from e
