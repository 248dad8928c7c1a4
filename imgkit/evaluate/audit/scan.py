"""One decoding pass over the images: pixel hash, perceptual hash, statistics, thumbnails.

Each image is decoded once at full size (its exact-copy hash is over the decoded
pixels, so a PNG and a BMP of one picture are the same image); everything else the
audit needs is taken from small versions: a 64x64 grey thumbnail (alignment of
candidate pairs; 4 KB an image, so kept in a memory-mapped file, not in memory), a
32x32 DCT hash, and a grey version of at most 128x128 for the statistics.
The caller gets each chunk's pixels for the embedding network as they are decoded,
so memory stays flat at any data-set size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgkit.data.images import open_image, to_array
from imgkit.errors import BadImageError

THUMB = 64  # thumbnail side for aligning candidate pairs
STATS_SIDE = 128
HASH_SIDE = 32
STAT_NAMES = ("std", "blank", "neighbour_corr", "sharpness")
CHUNK = 256


@dataclass
class Scan:
    """What one pass learnt about ``n`` images (arrays in the images' order).

    Attributes:
        ok: whether the image could be decoded.
        reasons: why not, per image ("" when ok).
        sha: SHA-256 of the decoded pixels (n, 32) uint8.
        phash: 64-bit DCT perceptual hash.
        stats: (n, 4) float32, columns :data:`STAT_NAMES`.
        thumbs: (n, 64, 64) uint8 grey thumbnails.
    """

    ok: np.ndarray
    reasons: list[str]
    sha: np.ndarray
    phash: np.ndarray
    stats: np.ndarray
    thumbs: np.ndarray

    @classmethod
    def empty(cls, n: int, thumbs: np.ndarray | None = None) -> Scan:
        """A scan of ``n`` images not read yet; ``thumbs`` may be a memory map to fill."""
        return cls(
            ok=np.zeros(n, bool),
            reasons=[""] * n,
            sha=np.zeros((n, 32), np.uint8),
            phash=np.zeros(n, np.uint64),
            stats=np.zeros((n, len(STAT_NAMES)), np.float32),
            thumbs=np.zeros((n, THUMB, THUMB), np.uint8) if thumbs is None else thumbs,
        )

    def save(self, path: Path) -> None:
        """Everything but the thumbnails (a memory-mapped file of their own) into ``path``."""
        np.savez(
            path,
            ok=self.ok,
            reasons=np.array(self.reasons, dtype=object).astype(str),
            sha=self.sha,
            phash=self.phash,
            stats=self.stats,
        )

    @classmethod
    def load(cls, path: Path, thumbs: Path) -> Scan:
        """Read :meth:`save`'s file; the thumbnails stay on disk (memory-mapped)."""
        with np.load(path) as z:
            return cls(
                z["ok"],
                [str(r) for r in z["reasons"]],
                z["sha"],
                z["phash"],
                z["stats"],
                np.load(thumbs, mmap_mode="r"),
            )


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
    m[0] /= np.sqrt(2)
    return m * np.sqrt(2 / n)


_DCT = _dct_matrix(HASH_SIDE)
_BITS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def perceptual_hash(grey32: np.ndarray) -> np.uint64:
    """The 64-bit DCT hash of a 32x32 grey image: its 8x8 lowest frequencies above their median."""
    coeffs = (_DCT @ grey32.astype(np.float64) @ _DCT.T)[:8, :8].reshape(-1)
    bits = coeffs > np.median(coeffs[1:])
    return np.uint64(np.bitwise_or.reduce(_BITS[bits])) if bits.any() else np.uint64(0)


def image_stats(grey: np.ndarray) -> np.ndarray:
    """Statistics of a grey image (float): :data:`STAT_NAMES`.

    ``blank``: share of pixels within 8 levels of the median; ``neighbour_corr``: the
    correlation of horizontally and vertically adjacent pixels (photos and drawings
    are far above 0.5, noise near 0); ``sharpness``: the variance of the Laplacian
    over the image's own variance, so brightness and contrast do not change it.
    """
    g = grey.astype(np.float64)
    std = float(g.std())
    blank = float((np.abs(g - np.median(g)) <= 8).mean())
    if std < 1e-6:
        return np.array([std, blank, 1.0, 0.0], np.float32)
    a = np.concatenate([g[:, :-1].ravel(), g[:-1, :].ravel()])
    b = np.concatenate([g[:, 1:].ravel(), g[1:, :].ravel()])
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 1.0
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return np.array([std, blank, corr, float(lap.var() / (std * std))], np.float32)


def pixel_hash(img: Image.Image) -> bytes:
    """SHA-256 of a decoded image's mode, size and pixels."""
    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.digest()


def _one(path: Path, embed: tuple | None):
    """Decode one image; return its record and the array the embedding network takes."""
    with open_image(path) as img:
        digest = pixel_hash(img)
        grey = img.convert("L")
        # Never enlarged for the statistics: upsampling would smooth noise into texture.
        side = (min(STATS_SIDE, grey.height), min(STATS_SIDE, grey.width))
        stats_img = to_array(grey, side, 1)[..., 0]
        thumb = to_array(grey, (THUMB, THUMB), 1)[..., 0]
        small = np.asarray(Image.fromarray(thumb).resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR))
        pixels = to_array(img, *embed) if embed else None
    return digest, perceptual_hash(small), image_stats(stats_img), thumb, pixels


def scan_images(
    paths: Sequence[str | os.PathLike],
    embed: tuple | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    thumbs: np.ndarray | None = None,
) -> Iterator[tuple[Scan | None, np.ndarray, np.ndarray]]:
    """Decode ``paths`` in chunks; yield ``(None, index, pixels)`` per chunk, then the scan.

    ``index`` are the positions of the chunk's readable images and ``pixels`` their
    (m, h, w, c) uint8 arrays as ``embed`` = (size, channels, resize) asks (empty
    when it is None). The last item
    is ``(scan, empty, empty)``: unreadable images are marked there with the reason,
    and the pass goes on. ``thumbs``: an (n, 64, 64) uint8 array (a memory map) to
    fill in place of one in memory (277,000 images: 1.1 GB).
    """
    n = len(paths)
    scan = Scan.empty(n, thumbs)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 2)) as pool:
        for start in range(0, n, CHUNK):
            idx = range(start, min(n, start + CHUNK))
            results = pool.map(lambda i: _try(Path(paths[i]), embed), idx)
            good, pixels = [], []
            for i, res in zip(idx, results, strict=True):
                if isinstance(res, str):
                    scan.reasons[i] = res
                    continue
                digest, phash, stats, thumb, px = res
                scan.ok[i] = True
                scan.sha[i] = np.frombuffer(digest, np.uint8)
                scan.phash[i], scan.stats[i], scan.thumbs[i] = phash, stats, thumb
                good.append(i)
                if px is not None:
                    pixels.append(px)
            if progress:
                progress(len(idx))
            arr = np.stack(pixels) if pixels else np.zeros((0, 1, 1, 3), np.uint8)
            yield None, np.array(good, np.int64), arr
    yield scan, np.zeros(0, np.int64), np.zeros((0, 1, 1, 3), np.uint8)


def _try(path: Path, embed):
    try:
        return _one(path, embed)
    except BadImageError as e:
        return e.reason
    except OSError as e:
        return e.strerror or str(e)
