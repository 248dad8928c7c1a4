"""Test-time augmentation: classify each image as the mean over several views of it.

View 0 is the image itself; the others are seeded combinations of a horizontal flip,
a small shift and a small zoom, applied in numpy to the uint8 arrays the model sees
(after the bundle's resize), so a cached dataset split is augmented without decoding
again, and no Keras backend op is involved. A view depends only on ``(seed, view
index)``, never on where an image sits in a batch, so results do not depend on the
batch size.

All views of a batch are stacked into one array and go through the model in one
forward pass: ``-n 10`` costs one model call per batch, with ten times the rows.

Calibration: the views' raw probabilities are averaged first and the bundle's
temperature is applied once, to the average. The average is the prediction of the
augmented ensemble, and a temperature is a correction of the final predictor's
confidence, so it belongs on what is written; with one view this is exactly
``imgkit predict``. Averaging probabilities (not logits) keeps one confidently wrong
view from dominating: it can move the mean by at most ``1/n``. The bundle's
temperature was fitted on single views, and averaging already softens disagreeing
views, so a temperature fitted on TTA output would fit better; a bundle may record
one later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgkit.infer.predict import Predictor

# Augmentation strength: shifts of up to 10% of a side, zooms in of up to 10%.
MAX_SHIFT = 0.1
MAX_ZOOM = 0.1


@dataclass(frozen=True)
class View:
    """One augmentation, the same for every image it is applied to.

    Attributes:
        flip: mirror left-right.
        shift: (down, right) as fractions of the height and width; whole pixels are
            used, so a pure shift copies pixels without blurring them.
        zoom: 1 is none; 1.1 keeps the central 1/1.1 of each side, scaled back up.
    """

    flip: bool = False
    shift: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.shift == (0.0, 0.0) and self.zoom == 1.0


IDENTITY = View()


def view_params(
    seed: int, index: int, max_shift: float = MAX_SHIFT, max_zoom: float = MAX_ZOOM
) -> View:
    """The augmentation for view ``index`` under ``seed``.

    View 0 is the image itself and view 1 its mirror image (the single most useful
    view for photos); later views draw a flip (half the time), a shift and a zoom from
    a generator seeded with ``(seed, index)`` alone.
    """
    if index == 0:
        return IDENTITY
    if index == 1:
        return View(flip=True)
    # SeedSequence entropy must be non-negative; any int --seed is folded into 64 bits.
    rng = np.random.default_rng([seed % 2**64, index])
    flip = bool(rng.random() < 0.5)
    dy, dx = rng.uniform(-max_shift, max_shift, size=2)
    zoom = 1.0 + rng.uniform(0.0, max_zoom)
    return View(flip, (float(dy), float(dx)), float(zoom))


def _source_coords(size: int, zoom: float, shift_px: int) -> tuple[np.ndarray, ...]:
    # For each output pixel centre, where it comes from in the input: about the image
    # centre, scaled by 1/zoom (a crop of size/zoom stretched back to size) and moved
    # by the shift. Indices are clamped, so what a shift uncovers repeats the edge.
    i = np.arange(size, dtype=np.float64)
    centre = (size - 1) / 2
    src = (i - centre) / zoom + centre - shift_px
    lo = np.floor(src)
    weight = (src - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    return np.clip(lo, 0, size - 1), np.clip(lo + 1, 0, size - 1), weight


def apply_view(arrays: np.ndarray, view: View) -> np.ndarray:
    """Apply one view to a batch (n, h, w, c) or one image (h, w, c) of uint8 pixels.

    Zooming resamples bilinearly; a flip or a whole-pixel shift only moves pixels.

    Returns:
        A new uint8 array of the same shape.
    """
    a = np.asarray(arrays)
    single = a.ndim == 3
    if single:
        a = a[None]
    if view.is_identity:
        out = a.copy()
        return out[0] if single else out
    if view.flip:
        a = a[:, :, ::-1]
    h, w = a.shape[1:3]
    y0, y1, wy = _source_coords(h, view.zoom, round(view.shift[0] * h))
    x0, x1, wx = _source_coords(w, view.zoom, round(view.shift[1] * w))
    top, bottom = a[:, y0].astype(np.float32), a[:, y1].astype(np.float32)
    wx = wx[None, None, :, None]
    wy = wy[None, :, None, None]
    upper = top[:, :, x0] * (1 - wx) + top[:, :, x1] * wx
    lower = bottom[:, :, x0] * (1 - wx) + bottom[:, :, x1] * wx
    out = np.clip(np.rint(upper * (1 - wy) + lower * wy), 0, 255).astype(np.uint8)
    return out[0] if single else out


def tta_proba(predictor: Predictor, arrays: np.ndarray, views: int, seed: int = 0) -> np.ndarray:
    """Calibrated probabilities (n, k): the mean over ``views`` views, then the temperature.

    All ``n * views`` images go through the model in one forward pass.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1 (got {views})")
    n = len(arrays)
    stacked = np.concatenate([apply_view(arrays, view_params(seed, k)) for k in range(views)])
    raw = predictor.raw_proba(stacked)
    mean = raw.reshape(views, n, -1).mean(axis=0)
    return predictor.calibrate(mean)
