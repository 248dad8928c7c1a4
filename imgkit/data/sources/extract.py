"""Safe extraction of zip and tar archives, one member at a time.

An archive is untrusted input: a member may try to land outside the extraction folder
(``../x``, ``/etc/x``), be a link or a device, or expand to far more bytes than its
header says (a zip bomb). :func:`extract_images` writes only regular image files, only
below the folder it is given, and counts the bytes it writes instead of believing the
header. What it does not take is returned as :class:`~imgkit.data.records.Reject` rows,
named ``<archive>:<member>``; the archive itself is only ever read.

The limits are module constants, so a caller (or a test) can change them:

- :data:`MAX_MEMBERS`: more members than this and the whole archive is refused.
- :data:`MAX_MEMBER_BYTES`: a member larger than this (uncompressed) is refused.
- :data:`MAX_TOTAL_BYTES`: more than this in all (uncompressed) and the archive is refused.
- :data:`MAX_RATIO` over :data:`RATIO_MIN_BYTES`: a member that expands more than this
  many times once past that size is refused as a likely zip bomb.
"""

from __future__ import annotations

import errno
import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from imgkit.data.images import (
    HIDDEN_FOLDER_REASON,
    HIDDEN_REASON,
    SKIPPED,
    has_image_extension,
    is_hidden,
    not_image_reason,
)
from imgkit.data.records import Reject
from imgkit.data.sources.archive_members import _BrokenStream, _Member, _tar_members, _zip_members
from imgkit.data.sources.archive_names import (
    _EMPTY,
    _parts,
    _size,
    archive_suffix,
    unsafe_path_reason,
)
from imgkit.errors import BadInputError, ImgkitError

MAX_MEMBERS = 1_000_000
MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 64 * 2**30
MAX_RATIO = 200
RATIO_MIN_BYTES = 2**20

REFUSED = "refused"

_CHUNK = 2**20
# Decompressors read their input ahead in buffers of a few KiB; a tar member's
# compressed size is measured from the file position, so this much is granted to keep
# an ordinary member from looking like a bomb.
_READ_AHEAD = 64 * 2**10
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
# What reading a damaged archive raises (bz2 raises OSError, gzip BadGzipFile, an
# OSError too).
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    # zipfile's answer to a member packed with a method it cannot decompress: a
    # reason to reject that archive, not a stub.
    NotImplementedError,
)


class _Extractor:
    """Extraction state of one archive: where to write, what was taken, the budgets."""

    def __init__(self, archive: Path, dest: Path):
        self.archive = archive
        self.label = archive.resolve().as_posix()
        self.dest = Path(os.path.realpath(dest))
        self.members = 0
        self.expected = 0
        self.total = 0
        self.written: list[Path] = []
        self.rejects: list[Reject] = []
        self.hidden_folders: set[str] = set()
        self.folders: dict[tuple[str, ...], Path] = {(): self.dest}

    # --- bookkeeping -------------------------------------------------------------------

    def reject(self, name: str, reason: str) -> None:
        # A line break in the name would split its rejects.csv row in two.
        shown = name.replace("\r", "\\r").replace("\n", "\\n")
        self.rejects.append(Reject(f"{self.label}:{shown}", reason))

    def refuse(self, name: str, why: str) -> None:
        self.reject(name, f"{REFUSED}: {why} (archive member {name!r})")

    # Read at call time, so a limit changed on this module applies.
    def max_members(self) -> int:
        return MAX_MEMBERS

    def max_total_bytes(self) -> int:
        return MAX_TOTAL_BYTES

    def too_many(self) -> BadInputError:
        return BadInputError(
            f"{self.archive}: refused: more than {MAX_MEMBERS:,} members (the limit per "
            "archive); nothing was taken from it"
        )

    def too_big(self) -> BadInputError:
        return BadInputError(
            f"{self.archive}: refused: its members expand to more than "
            f"{_size(MAX_TOTAL_BYTES)} (the limit per archive); nothing was taken from it"
        )

    def count_member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise self.too_many()

    def count_bytes(self, n: int) -> None:
        self.total += n
        if self.total > MAX_TOTAL_BYTES:
            raise self.too_big()

    # --- one member ----------------------------------------------------------------------

    def take(self, member: _Member, raw: BinaryIO | None = None) -> None:
        """Extract one member if it is a safe image file; otherwise record why not.

        Args:
            member: the member.
            raw: the archive file under a decompressor (compressed tar), whose position
                measures how much compressed data a member used; None otherwise.
        """
        name = member.name
        self.count_member()
        unsafe = unsafe_path_reason(name)
        if member.kind == "dir":
            # Folders are made as their files need them; a hostile one is still worth
            # reporting, but "./" (as `tar -C dir .` writes) is harmless.
            if unsafe and unsafe != _EMPTY:
                self.refuse(name, unsafe)
            return
        if unsafe:
            self.refuse(name, unsafe)
            return
        if member.kind != "file":
            target = f" to {member.target!r}" if member.target else ""
            self.refuse(name, f"{member.kind}{target}; only regular files are extracted")
            return
        parts = _parts(name)
        hidden = next((i for i, p in enumerate(parts) if is_hidden(p)), None)
        if hidden is not None:
            if hidden == len(parts) - 1:
                self.reject(name, HIDDEN_REASON)
            else:
                folder = "/".join(parts[: hidden + 1]) + "/"
                if folder not in self.hidden_folders:
                    self.hidden_folders.add(folder)
                    self.reject(folder, HIDDEN_FOLDER_REASON)
            return
        if archive_suffix(name):
            self.reject(
                name,
                f"{SKIPPED}: an archive inside the archive (not opened; give it to imgkit "
                "prep as a source of its own)",
            )
            return
        if not has_image_extension(name):
            self.reject(name, not_image_reason(name))
            return
        if member.size > MAX_MEMBER_BYTES:
            self.refuse(
                name,
                f"declares {_size(member.size)} uncompressed, over the limit of "
                f"{_size(MAX_MEMBER_BYTES)} per member",
            )
            return
        target = self._target(name, parts)
        if target is not None:
            self._write(member, target, raw)

    def _target(self, name: str, parts: list[str]) -> Path | None:
        """The file to write a member to, with its folders made; None if it cannot be."""
        folder = self._folder(name, tuple(parts[:-1]))
        return None if folder is None else folder / parts[-1]

    def _folder(self, name: str, parts: tuple[str, ...]) -> Path | None:
        """Make (once) and check the folder ``parts`` below the destination."""
        if parts in self.folders:
            return self.folders[parts]
        if not parts:
            return self.dest
        parent = self._folder(name, parts[:-1])
        if parent is None:
            return None
        folder = parent / parts[-1]
        try:
            folder.mkdir()
        except FileExistsError:
            # Only this extractor writes here, so an existing non-folder is a member
            # file of the same name; never follow a link, whatever made it.
            if folder.is_symlink() or not folder.is_dir():
                self.refuse(name, f"its folder {parts[-1]!r} is also a file in the archive")
                return None
        except OSError as e:
            self.refuse(name, f"cannot make its folder ({e.strerror or e})")
            return None
        # Belt and braces: the name checks already rule this out, but nothing outside
        # the destination may ever be written, whatever a future change does.
        if not Path(os.path.realpath(folder)).is_relative_to(self.dest):
            self.refuse(name, "path would land outside the extraction folder")
            return None
        self.folders[parts] = folder
        return folder

    def _write(self, member: _Member, target: Path, raw: BinaryIO | None) -> None:
        name = member.name
        try:
            fd = os.open(target, _WRITE_FLAGS, 0o666)
        except FileExistsError:
            self.reject(name, f"{SKIPPED}: a second member with this name (the first was taken)")
            return
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ImgkitError(f"{target}: cannot extract {self.archive}: disk full") from e
            self.refuse(name, f"cannot write it ({e.strerror or e})")
            return
        why = None
        try:
            with os.fdopen(fd, "wb") as out:
                why = self._copy(member, out, raw)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                target.unlink(missing_ok=True)
                raise ImgkitError(f"{target}: cannot extract {self.archive}: disk full") from e
            why = f"cannot write it ({e.strerror or e})"
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if why is None:
            self.written.append(target)
        else:
            target.unlink(missing_ok=True)
            self.refuse(name, why)

    def _copy(self, member: _Member, out: BinaryIO, raw: BinaryIO | None) -> str | None:
        """Stream a member to ``out``, counting bytes; the reason it was stopped, or None."""
        start = raw.tell() if raw is not None else 0
        n = 0
        try:
            src = member.open()
        except _READ_ERRORS as e:
            return self._broken(e, raw)
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except _READ_ERRORS as e:
                    return self._broken(e, raw)
                if not chunk:
                    return None
                n += len(chunk)
                self.count_bytes(len(chunk))
                if n > MAX_MEMBER_BYTES:
                    return (
                        f"expands to more than {_size(MAX_MEMBER_BYTES)}, the limit per "
                        "member (its header said less)"
                    )
                if n > RATIO_MIN_BYTES:
                    # Zip records each member's compressed size and never reads past it;
                    # a compressed tar's is measured from the archive file's position.
                    if raw is None:
                        packed = member.compressed or 0
                    else:
                        packed = raw.tell() - start + _READ_AHEAD
                    if n > MAX_RATIO * max(packed, 1):
                        return (
                            f"expands more than {MAX_RATIO}:1 (a zip bomb?); stopped after "
                            f"{_size(n)}"
                        )
                out.write(chunk)

    @staticmethod
    def _broken(error: BaseException, raw: BinaryIO | None) -> str:
        if raw is not None or isinstance(error, tarfile.TarError):
            # A tar is one stream: past a broken member nothing can be trusted.
            raise _BrokenStream(error)
        return f"corrupt data in the archive ({error})"


# --- the two formats --------------------------------------------------------------------


# --- the entry point -----------------------------------------------------------------------


def extract_images(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Path], list[Reject]]:
    """Extract the image files of a zip or tar archive below ``dest``, safely.

    Members are read one at a time and streamed out with their bytes counted. Refused
    (listed as rejects, the rest goes on): absolute paths, ``..`` components, links,
    devices, FIFOs and sparse files, members over :data:`MAX_MEMBER_BYTES` or expanding
    more than :data:`MAX_RATIO` times, and corrupt zip members. Skipped (listed as
    rejects): hidden and system files and folders (``__MACOSX/``, ``._x``,
    ``.DS_Store``, ``Thumbs.db``), non-image files, archives inside the archive, and a
    second member of the same name. Folders are made as needed; file modes, owners and
    times from the archive are ignored.

    Args:
        archive: a .zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2 or .tar.xz/.txz file.
        dest: an existing folder; nothing is written outside it.
        progress: called as ``progress(advance, total)`` per member (total 0 when
            unknown, as for tar).

    Returns:
        ``(written, rejects)``: the image files written, in archive order, and a
        reject per member not taken, its path ``<archive>:<member>``.

    Raises:
        BadInputError: not a readable archive, corrupt or cut off, or over
            :data:`MAX_MEMBERS` or :data:`MAX_TOTAL_BYTES`; the message names the
            archive. Files already written are left for the caller to remove.
        ImgkitError: the disk is full.
    """
    archive = Path(archive)
    suffix = archive_suffix(archive)
    if suffix is None:
        raise BadInputError(f"{archive}: not a zip or tar archive (by its name)")
    extractor = _Extractor(archive, Path(dest))
    is_zip = suffix == ".zip"
    try:
        members = _zip_members(archive, extractor) if is_zip else _tar_members(archive, extractor)
        for member, raw in members:
            extractor.take(member, raw)
            if progress is not None:
                progress(1, extractor.expected)
    except FileNotFoundError:
        raise BadInputError(f"{archive}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{archive}: is a folder, not an archive file") from None
    except _BrokenStream as e:
        raise _unreadable(archive, is_zip, e.args[0]) from None
    except _READ_ERRORS as e:
        raise _unreadable(archive, is_zip, e) from None
    return extractor.written, extractor.rejects


def _unreadable(archive: Path, is_zip: bool, error: BaseException) -> BadInputError:
    kind = "zip" if is_zip else "tar"
    detail = str(error) or type(error).__name__
    return BadInputError(f"{archive}: not a readable {kind} archive: corrupt or cut off ({detail})")
