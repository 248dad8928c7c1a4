"""Outliers and imbalance: images unlike the rest, classes far below the others.

Two kinds of evidence, each giving a reason (written in issues.csv's ``other``):

- image statistics (:func:`imgkit.evaluate.audit.scan.image_stats`): ``constant``,
  ``near_blank``, ``noise``, and ``blur`` (sharpness far below the data set's, as a
  robust z-score, so a set of soft images is not all flagged);
- embedding distances, as robust z-scores (median and MAD): to the image's nearest
  images of its class (``far_from_class``) and to its nearest images of any class
  (``far_from_data``).

Scores: the statistics' reasons are certain problems (1.0 down to 0.97); an
embedding outlier scores z / (z + outlier_z), between 0.5 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imgkit.evaluate.audit.thresholds import Thresholds

RULE_SCORES = {"constant": 1.0, "near_blank": 0.99, "noise": 0.98, "blur": 0.97}
MIN_GROUP = 8  # fewer images than this give no robust centre or spread


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 MAD); zeros when the spread is nil."""
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if mad < 1e-9:
        return np.zeros_like(values, dtype=np.float64)
    return (values - med) / mad


def rule_reasons(stats: np.ndarray, ok: np.ndarray, t: Thresholds) -> list[str]:
    """The statistics' reason per image ("" for none)."""
    std, blank, corr, sharp = stats.T
    out = [""] * len(stats)
    idx = np.flatnonzero(ok)
    blur_z = np.zeros(len(stats))
    if len(idx) >= MIN_GROUP:
        blur_z[idx] = robust_z(np.log(sharp[idx] + 1e-4))
    for i in idx:
        if std[i] < t.constant_std:
            out[i] = "constant"
        elif blank[i] >= t.blank_fraction:
            out[i] = "near_blank"
        elif corr[i] < t.noise_correlation:
            out[i] = "noise"
        elif blur_z[i] < -t.blur_z:
            out[i] = "blur"
    return out


def _class_knn_distance(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance of each of ``rows`` to its ``k`` nearest others among them."""
    from imgkit.evaluate.audit.neighbours import neighbours_of

    _, sims = neighbours_of(vectors, rows, k)
    sims = np.where(np.isfinite(sims), sims, np.nan)
    return 1.0 - np.nanmean(sims, axis=1)


def embedding_z(
    vectors: np.ndarray, ok: np.ndarray, labels: Sequence[str], nbr_s: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Robust z of each image's distance to its nearest images of its class, and of all.

    Within a class the distance is to the ``k`` nearest images of that class (not to
    the class centre): a class of varied images (photos of many scenes) still has
    close neighbours for each member, and an image filed in the wrong class has none.
    """
    n = len(vectors)
    z_class, z_data = np.zeros(n), np.zeros(n)
    labels = np.asarray(labels, dtype=object)
    for c in sorted({v for v in labels[ok] if v}):
        idx = np.flatnonzero(ok & (labels == c))
        if len(idx) < MIN_GROUP:
            continue
        z_class[idx] = robust_z(_class_knn_distance(vectors, idx, k))
    idx = np.flatnonzero(ok)
    if len(idx) >= MIN_GROUP:
        sims = np.where(np.isfinite(nbr_s[idx]), nbr_s[idx], np.nan)
        dist = 1.0 - np.nanmean(sims, axis=1)
        z_data[idx] = robust_z(np.nan_to_num(dist, nan=np.nanmax(dist)))
    return z_class, z_data


def outlier_rows(
    names: Sequence[str],
    splits: Sequence[str],
    reasons: Sequence[str],
    z: tuple[np.ndarray, np.ndarray] | None,
    t: Thresholds,
) -> list[dict]:
    """issues.csv rows for outliers; ``other`` holds the reason."""
    rows = []
    for i, name in enumerate(names):
        reason, score = reasons[i], RULE_SCORES.get(reasons[i], 0.0)
        if not reason and z is not None:
            zc, zd = z[0][i], z[1][i]
            best = max(zc, zd)
            if best >= t.outlier_z:
                reason = "far_from_class" if zc >= zd else "far_from_data"
                score = best / (best + t.outlier_z)
        if reason:
            rows.append(
                {"path": name, "issue": "outlier", "score": round(float(score), 4),
                 "other": reason, "split": splits[i], "other_split": ""}
            )  # fmt: skip
    return rows


def imbalance_rows(labels: Sequence[str], t: Thresholds) -> tuple[list[dict], dict[str, int]]:
    """Rows for classes with fewer images than ``imbalance_ratio`` x the median class.

    ``path`` is the class name, ``other`` the median class count.
    """
    names, counts = np.unique([v for v in labels if v], return_counts=True)
    per_class = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    if len(per_class) < 2:
        return [], per_class
    median = float(np.median(counts))
    rows = [
        {"path": c, "issue": "imbalance", "score": round(1.0 - k / median, 4),
         "other": f"median {median:g}", "split": "", "other_split": ""}
        for c, k in per_class.items()
        if k < t.imbalance_ratio * median
    ]  # fmt: skip
    return rows, per_class
