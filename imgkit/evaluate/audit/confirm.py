"""Confirming a candidate pair: align one image onto the other, then correlate them.

A neighbour in embedding space is only a candidate: two different sneakers of one
model, or two tiles of one texture, are each other's nearest neighbours without being
copies. A copy (re-encoded, resized, slightly cropped, brightened, blurred) can be
mapped onto its original by a simple geometric transform after which the pixels
agree; a look-alike cannot. So each pair is aligned with OpenCV and the pixels of
the overlap compared (:func:`mismatch`):

1. on the 64x64 thumbnails, by ECC (enhanced correlation coefficient) with an affine
   motion started at the identity: enough for resized copies and small crops;
2. where that fails, on the images themselves (longest side 320): ORB key points,
   matched and fitted with RANSAC to a similarity transform (larger crops, shifts).

Both images are lightly blurred first (so a blurred copy still matches) and the
brightness and contrast fitted (so a brightened one does too). Measured on the
benchmark's candidates (1,000 images, 170 true pairs among ~2,400 candidates): the
grey-level correlation of aligned images cannot tell Fashion-MNIST look-alikes
(0.997) from copies, the share of disagreeing pixels can (copies <= 0.2, 4
look-alikes below).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imgkit.evaluate.audit.neighbours import require
from imgkit.evaluate.audit.scan import THUMB

ORB_SIDE = 320
SMOOTH = 1.0  # sigma (thumbnail pixels) of the blur taken before comparing
IDENTITY_MISMATCH = 0.1  # see match_thumbs
MIN_STD = 4.0  # grey levels: flatter images carry too little to tell a copy from a look-alike


@dataclass(frozen=True)
class Match:
    """How two images compare once aligned.

    Attributes:
        mismatch: share of the compared pixels that disagree (0: a perfect copy).
        overlap: share of the first image the aligned second one covers.
        method: "ecc", "identity" or "orb".
        aligned: whether ECC (or ORB) found a plausible alignment.
    """

    mismatch: float
    overlap: float
    method: str
    aligned: bool = True


NO_MATCH = Match(1.0, 0.0, "none", aligned=False)


def _smooth(cv2, x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x.astype(np.float32), (0, 0), SMOOTH)


def mismatch(cv2, a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float | None:
    """Share of pixels of ``a`` that ``b`` (aligned, same shape) does not explain.

    ``b``'s grey levels are fitted to ``a``'s by least squares (a brightness and
    contrast change), over the pixels neither image has clipped (a brightened copy
    saturates its highlights); a pixel disagrees when the fit misses it by more than
    8 grey levels or a tenth of the image's contrast. None when the images are too
    flat to tell.
    """
    inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    keep = inside & (a < 250) & (b < 250) & (a > 5) & (b > 5)
    if keep.sum() < 0.1 * inside.sum():
        keep = inside
    if keep.sum() < 64:
        return None
    sa, sb = _smooth(cv2, a), _smooth(cv2, b)
    # Only the content counts: on a starry sky or a garment on black, the shared
    # background would outvote every difference.
    content = keep & (
        (np.abs(sa - np.median(sa[keep])) > 8) | (np.abs(sb - np.median(sb[keep])) > 8)
    )
    if content.sum() >= 64:
        keep = content
    x, y = sa[keep], sb[keep]
    if x.std() < MIN_STD or y.std() < MIN_STD:
        return None
    design = np.stack([y, np.ones_like(y)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, x.astype(np.float64), rcond=None)
    residual = np.abs(x - design @ coef)
    return float((residual > max(8.0, 0.1 * float(x.std()))).mean())


def _sane(warp: np.ndarray) -> bool:
    """An affine map a copy could have gone through: scale 0.5-2, little shear or turn."""
    m = warp[:, :2]
    sx, sy = np.linalg.norm(m[:, 0]), np.linalg.norm(m[:, 1])
    if not (0.5 <= sx <= 2 and 0.5 <= sy <= 2 and 0.7 <= sx / sy <= 1.4):
        return False
    cos_skew = abs(float(m[:, 0] @ m[:, 1])) / (sx * sy)
    return cos_skew < 0.2 and abs(float(np.arctan2(m[1, 0], m[0, 0]))) < 0.35


def _warped(cv2, a, b, warp, method: str) -> Match:
    """Compare ``a`` with ``b`` mapped onto it by ``warp`` (b's coordinates from a's)."""
    h, w = a.shape
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    bw = cv2.warpAffine(b.astype(np.float32), warp, (w, h), flags=flags)
    inside = cv2.warpAffine(np.ones(b.shape, np.float32), warp, (w, h), flags=flags) > 0.999
    bad = mismatch(cv2, a.astype(np.float32), bw, inside)
    if bad is None:
        return NO_MATCH
    return Match(bad, float(inside.mean()), method)


def match_thumbs(a: np.ndarray, b: np.ndarray) -> Match:
    """Compare thumbnail ``b`` with ``a`` as they are and aligned by ECC; keep the better.

    Both are tried: a brightened copy with clipped highlights can pull ECC a few
    pixels off the identity that fits it. ``aligned`` is False when ECC found no
    plausible alignment: the sign of a larger geometric change, which
    :func:`match_files` tries.
    """
    cv2 = require("cv2")
    same = _warped(cv2, a, b, np.eye(2, 3, dtype=np.float32), "identity")
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            _smooth(cv2, a), _smooth(cv2, b), warp, cv2.MOTION_AFFINE, criteria, None, 1
        )
        found = _sane(warp)
    except cv2.error:  # no convergence: the images do not align
        found = False
    if not found:  # the identity alone fits only a close copy
        return Match(same.mismatch, same.overlap, same.method, same.mismatch <= IDENTITY_MISMATCH)
    moved = _warped(cv2, a, b, warp, "ecc")
    # The identity counts (instead of or without ECC) only when it fits closely:
    # otherwise look-alikes on one template (Fashion-MNIST's trousers) pass as copies
    # (benchmark precision 81% when any identity fit counted).
    if same.mismatch < moved.mismatch and same.mismatch <= IDENTITY_MISMATCH:
        return same
    return moved


def _grey(path: str | os.PathLike) -> np.ndarray:
    from imgkit.data.images import open_image

    with open_image(path, draft_size=(ORB_SIDE, ORB_SIDE)) as img:
        g = img.convert("L")
        g.thumbnail((ORB_SIDE, ORB_SIDE))
        return np.asarray(g)


def match_files(path_a, path_b, min_inliers: int = 12) -> Match:
    """Align image ``path_b`` onto ``path_a`` with ORB + RANSAC and compare them."""
    cv2 = require("cv2")
    a, b = _grey(path_a), _grey(path_b)
    orb = cv2.ORB_create(nfeatures=1000, fastThreshold=10)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < min_inliers or len(kb) < min_inliers:
        return NO_MATCH
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < min_inliers:
        return NO_MATCH
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    # b's coordinates from a's: what warpAffine with WARP_INVERSE_MAP takes.
    warp, inliers = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=3)
    if warp is None or int(inliers.sum()) < min_inliers or not _sane(warp):
        return NO_MATCH
    # Compare at thumbnail scale (both images shrunk alike), where blur and
    # re-encoding no longer show: the linear part is unchanged, the shift scales.
    scale = THUMB / max(a.shape)
    small = warp.astype(np.float32).copy()
    small[:, 2] *= scale
    return _warped(cv2, _shrink(cv2, a, scale), _shrink(cv2, b, scale), small, "orb")


def _shrink(cv2, x: np.ndarray, scale: float) -> np.ndarray:
    size = (max(1, round(x.shape[1] * scale)), max(1, round(x.shape[0] * scale)))
    return cv2.resize(x, size, interpolation=cv2.INTER_AREA)
