"""What predict, tta and segment read: image paths, shards, and the count of what was read.

Inputs are image files, folders (recursive, sorted), dataset folders (one split), or
paths on stdin; :mod:`imgkit.infer.plan` puts them in one ordered stream, and inputs
that cannot be read are reported through a callback and skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from imgkit.data.dataset import INFO, MANIFEST
from imgkit.data.records import Reject
from imgkit.errors import BadImageError


def is_dataset_folder(path: str | os.PathLike) -> bool:
    """A folder made by ``imgkit prep`` (it has a manifest and dataset.json)."""
    p = Path(path)
    return (p / MANIFEST).is_file() and (p / INFO).is_file()


def iter_input_paths(
    inputs: Iterable[str | os.PathLike], stdin: TextIO | None = None
) -> Iterator[tuple[Path | None, Reject | None]]:
    """Expand inputs into image paths, lazily, in the order given.

    A folder is walked recursively in sorted order; a file is taken as it is (it is
    decoded later, which says whether it is an image); ``-`` reads one path per line
    from ``stdin``, each expanded the same way.

    Yields:
        ``(path, None)`` for each image to predict, ``(None, reject)`` for each input
        that cannot be (missing, hidden, not an image file in a folder).
    """
    from imgkit.data.images import list_images

    for item in inputs:
        if str(item) == "-":
            if stdin is None:
                raise ValueError("'-' given but no stdin stream")
            # Only the line ending is cut: a file name may start or end with spaces.
            lines = (line.rstrip("\r\n") for line in stdin)
            yield from iter_input_paths(x for x in lines if x.strip() and x != "-")
            continue
        path = Path(item)
        if path.is_dir():
            paths, rejects = list_images(path)
            for r in rejects:
                yield None, r
            for p in paths:
                yield Path(p), None
        elif path.exists():
            yield path, None
        else:
            yield None, Reject(str(path), "no such file or folder")


class Tally:
    """Counts what was read and what was turned away, passing each reject on to
    ``on_reject``; :meth:`check` is the one "nothing could be read" check of inference."""

    def __init__(self, on_reject: Callable[[Reject], None] | None = None):
        self.on_reject = on_reject
        self.rejected = 0
        self.read = 0

    def __call__(self, reject: Reject) -> None:
        self.rejected += 1
        if self.on_reject:
            self.on_reject(reject)

    def check(self, verb: str, shard: tuple[int, int] | None = None) -> None:
        """Raise when not a single image was read.

        A shard may rightly hold nothing (more shards than inputs); it fails only when
        what it held could not be read.

        Raises:
            BadInputError: "no image could be {verb}", with how many inputs were turned away.
        """
        if self.read or (shard is not None and not self.rejected):
            return
        from imgkit.errors import BadInputError

        n = self.rejected
        why = f" ({n} input{'s' if n != 1 else ''} could not be read)" if n else ""
        raise BadInputError(f"no image could be {verb}{why}")


def decode_reason(error: BadImageError | OSError) -> str:
    """Why a file could not be decoded, in the words a reject gives."""
    if isinstance(error, BadImageError):
        return error.reason
    return error.strerror or str(error)


# --- shards ---------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Read ``--shard I/N`` (1-based: 1/3, 2/3, 3/3); None when not given.

    Raises:
        ImgkitError: not two whole numbers with 1 <= I <= N.
    """
    if text is None:
        return None
    from imgkit.errors import BadInputError

    parts = str(text).strip().split("/")
    try:
        i, n = (int(x) for x in parts)
    except ValueError:
        i, n = 0, 0
    if len(parts) != 2 or not 1 <= i <= n:
        raise BadInputError(f"--shard must be I/N with 1 <= I <= N, like 2/8 (got {text!r})")
    return i, n


def shard_bounds(total: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The ``[start, stop)`` positions shard I/N takes of ``total`` inputs.

    Shards are contiguous and in order, so shard outputs concatenated in order are
    the single-process output; their sizes differ by at most one.
    """
    if shard is None:
        return 0, total
    i, n = shard
    return (i - 1) * total // n, i * total // n
