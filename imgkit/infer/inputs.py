"""What predict, tta and segment read: the image paths of their inputs, decoded in batches.

Inputs are image files, folders (recursive, sorted), dataset folders (one split), or
paths on stdin; unreadable images are reported through a callback and skipped, and
decoding runs ahead of the model in a worker thread, in constant memory."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import numpy as np

from imgkit.data.dataset import INFO, MANIFEST, Reject
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


class RejectCounter:
    """Counts rejected inputs and passes each on to ``on_reject``; says, when nothing
    could be read, how many inputs were turned away."""

    def __init__(self, on_reject: Callable[[Reject], None] | None = None):
        self.on_reject = on_reject
        self.count = 0

    def __call__(self, reject: Reject) -> None:
        self.count += 1
        if self.on_reject:
            self.on_reject(reject)

    def nothing_read(self, verb: str = "predicted"):
        from imgkit.errors import ImgkitError

        n = self.count
        why = f" ({n} input{'s' if n != 1 else ''} could not be read)" if n else ""
        return ImgkitError(f"no image could be {verb}{why}")


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


def shard_slices(lengths: Iterable[int], shard: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Split a shard's range over consecutive parts of the input: one local
    ``(start, stop)`` per part (empty where the shard takes none of it)."""
    lengths = list(lengths)
    lo, hi = shard_bounds(sum(lengths), shard)
    out, offset = [], 0
    for n in lengths:
        start, stop = max(lo - offset, 0), max(min(hi - offset, n), 0)
        out.append((min(start, stop), stop))
        offset += n
    return out


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def decoded_batches(
    paths: Iterable[str | os.PathLike],
    decode: Callable[[Path], np.ndarray],
    batch_size: int,
    workers: int | None = None,
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Decode images in a thread pool, one batch ahead of the consumer.

    At most two batches are in flight: the one being yielded and the next one
    decoding, so memory stays flat and paths are read from ``paths`` only as needed.

    Args:
        paths: image paths (any iterable, consumed lazily).
        decode: path -> uint8 array; raises BadImageError or OSError for a bad file.
        batch_size: images per batch.
        workers: decoding threads (default: up to 4, no more than the CPUs).
        on_reject: called with a Reject for each file that cannot be decoded.

    Yields:
        ``(paths, arrays)`` for each batch with at least one good image.
    """
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def collect(chunk: list[Path], futures: list[Future]):
        good, arrays = [], []
        for path, fut in zip(chunk, futures, strict=True):
            try:
                arrays.append(fut.result())
                good.append(path)
            except BadImageError as e:
                if on_reject:
                    on_reject(Reject(str(path), e.reason))
            except OSError as e:
                if on_reject:
                    on_reject(Reject(str(path), e.strerror or str(e)))
        return good, arrays

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for chunk in _chunks((Path(p) for p in paths), batch_size):
            pending.append((chunk, [pool.submit(decode, p) for p in chunk]))
            # Hand out batch k only once batch k+1 is decoding behind it.
            if len(pending) > 1:
                good, arrays = collect(*pending.popleft())
                if good:
                    yield good, np.stack(arrays)
        while pending:
            good, arrays = collect(*pending.popleft())
            if good:
                yield good, np.stack(arrays)
