"""Archive members, zip or tar alike: name, kind, sizes and a way to open each one.

Declared counts and sizes are checked against the extractor's limits before anything
is read, where the format allows (``extractor`` is the caller's
``imgkit.data.sources.extract._Extractor``).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imgkit.data.images import (
    has_image_extension,
)


class _BrokenStream(Exception):
    """A tar stream broke mid-member: nothing after it can be read."""


@dataclass
class _Member:
    """One archive member, as either format describes it.

    Attributes:
        name: the name as stored in the archive.
        kind: "file", "dir", or what makes it unsafe ("symbolic link", "hard link", ...).
        size: the declared uncompressed size (checked, never trusted).
        compressed: the compressed size when the format records one per member (zip);
            None when it is measured while reading (tar).
        open: returns a readable binary stream of the member's data.
        target: where a link points, for the reject reason.
    """

    name: str
    kind: str
    size: int
    compressed: int | None
    open: Callable[[], BinaryIO]
    target: str = ""


def _zip_is_dir(info: zipfile.ZipInfo) -> bool:
    # ZipInfo.is_dir() reads the name's last character, so an empty name (a hostile
    # archive's) would raise IndexError there.
    return info.filename.endswith("/")


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if _zip_is_dir(info) or stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if info.flag_bits & 0x1:
        return "encrypted member (password-protected archives are not supported)"
    return "file"


def _zip_members(archive: Path, extractor) -> Iterator[tuple[_Member, None]]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        extractor.expected = len(infos)
        if len(infos) > extractor.max_members():
            raise extractor.too_many()
        # Declared sizes can lie low but never make a good archive look too big, so
        # refusing on them early is safe; the bytes are still counted while extracting.
        declared = sum(
            i.file_size for i in infos if not _zip_is_dir(i) and has_image_extension(i.filename)
        )
        if declared > extractor.max_total_bytes():
            raise extractor.too_big()
        for info in infos:
            yield (
                _Member(
                    info.filename,
                    _zip_kind(info),
                    info.file_size,
                    info.compress_size,
                    lambda info=info: zf.open(info),
                ),
                None,
            )


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device file"
    if info.isfifo():
        return "FIFO (named pipe)"
    if info.issparse():
        return "sparse file"
    if info.isreg():
        return "file"
    return f"unsupported member type {info.type!r}"


def _tar_members(archive: Path, extractor) -> Iterator[tuple[_Member, BinaryIO]]:
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
        packed = tf.fileobj is not raw
        while (info := tf.next()) is not None:
            # The members list is only a cache for random access, which is not used;
            # emptying it keeps memory flat over a million members.
            tf.members.clear()
            if packed and info.offset_data + info.size > extractor.max_total_bytes():
                # Even skipping a member of a compressed tar means decompressing it, so
                # the whole stream counts towards the total, not only the images taken.
                raise extractor.too_big()
            member = _Member(
                info.name,
                _tar_kind(info),
                info.size,
                None,
                lambda info=info: tf.extractfile(info),
                info.linkname,
            )
            yield member, raw if packed else None
        _check_tar_end(tf)


def _check_tar_end(tf: tarfile.TarFile) -> None:
    """tarfile ends quietly at a cut-off or garbled header; make that an error."""
    tf.fileobj.seek(tf.offset)
    block = tf.fileobj.read(tarfile.BLOCKSIZE)
    if block and (len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE):
        raise tarfile.ReadError(f"bad or cut-off member header at byte {tf.offset}")
