"""The data set's scan joined with ``--against``'s: on disk, a chunk of rows at a time.

The audit searches and checks the union of the two sets as one list of images (the
data set's first). Its two large arrays, the 64x64 thumbnails (4 KB an image) and
the embeddings (5 KB an image at 1,280 features), are copied from each set's memory
maps (the data set's cache, or the scratch folder) into one memory-mapped file each
in the scratch folder, :data:`COPY_ROWS` rows at a time. The neighbour search and
the pair check then read the union from disk in chunks, exactly as they read a data
set alone, and memory does not grow with either set beyond the per-image
bookkeeping joined in memory: validity, hashes and statistics (57 bytes an image),
names and paths. Concatenated in memory instead, 277,000 images and as many
``--against`` ones would hold 5 GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from imgkit.evaluate.audit.inputs import ImageSet
from imgkit.evaluate.audit.scan import Scan

COPY_ROWS = 4096  # rows copied at once: 16 MB of thumbnails, 20 MB of 1,280-wide vectors


def stack_on_disk(path: Path, parts: list[np.ndarray], width: tuple[int, ...]) -> np.ndarray:
    """``parts`` one after the other in a new memory-mapped file ``path`` (read-only).

    Each part is copied in chunks of :data:`COPY_ROWS` rows, from its memory map to
    the file's, so no part is ever read into memory whole. A part whose rows are not
    ``width`` wide (the 1-wide zero array a set with no readable image gets) is left
    as zeros: its rows are never searched.
    """
    rows = sum(len(p) for p in parts)
    if not rows:  # an empty file cannot be mapped
        return np.zeros((0, *width), parts[0].dtype)
    out = open_memmap(path, "w+", parts[0].dtype, (rows, *width))
    start = 0
    for part in parts:
        if part.shape[1:] == width:
            for s in range(0, len(part), COPY_ROWS):
                chunk = part[s : s + COPY_ROWS]
                out[start + s : start + s + len(chunk)] = chunk
        start += len(part)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _vector_width(parts: list[tuple[np.ndarray, Scan]]) -> tuple[int, ...] | None:
    """The embeddings' width: that of the sets with a readable image; None if they differ."""
    widths = {v.shape[1:] for v, s in parts if s.ok.any()}
    if len(widths) > 1:
        return None
    return widths.pop() if widths else parts[0][0].shape[1:]


def join(
    a: ImageSet,
    b: ImageSet | None,
    sa: Scan,
    sb: Scan | None,
    va: np.ndarray | None,
    vb: np.ndarray | None,
    folder: Path,
) -> tuple[list[str], list, list[str], Scan, np.ndarray | None]:
    """Names, paths, splits, scan and vectors of ``a`` followed by ``b``'s.

    ``a`` alone (``b`` None) is returned as it is. Otherwise the thumbnails and the
    vectors are memory maps of new files in ``folder`` (which must outlive their use).
    """
    if b is None or sb is None:
        return a.names, a.paths, a.splits, sa, va
    thumbs = stack_on_disk(
        folder / "joined-thumbs.npy", [sa.thumbs, sb.thumbs], sa.thumbs.shape[1:]
    )
    scan = Scan(
        np.concatenate([sa.ok, sb.ok]),
        sa.reasons + sb.reasons,
        np.concatenate([sa.sha, sb.sha]),
        np.concatenate([sa.phash, sb.phash]),
        np.concatenate([sa.stats, sb.stats]),
        thumbs,
    )
    vectors = None
    if va is not None and vb is not None:
        width = _vector_width([(va, sa), (vb, sb)])
        if width is not None:
            vectors = stack_on_disk(folder / "joined-vectors.npy", [va, vb], width)
    return a.names + b.names, a.paths + b.paths, a.splits + b.splits, scan, vectors
