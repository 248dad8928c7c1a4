"""Figures for evaluation: several runs overlaid, a confusion matrix.

Drawn like the training curves (:mod:`imgkit.train.curves`): matplotlib's ``Figure``
on the Agg canvas, never pyplot, imported only when a figure is drawn; PNGs written
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgkit.train.curves import _epochs, _figure, _save


def plot_runs(histories: dict, path: str | os.PathLike) -> Path:
    """Overlay several runs: one colour per run, solid train and dashed val curves.

    Args:
        histories: run name -> its history DataFrame (as for :func:`plot_history`).
        path: the PNG to write.

    Returns:
        The path written.
    """
    panels = [("loss", "loss")]
    if any("accuracy" in df or "val_accuracy" in df for df in histories.values()):
        panels.append(("accuracy", "accuracy"))
    fig = _figure(6 * len(panels), 4.2)
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    colors = [f"C{i % 10}" for i in range(len(histories))]
    for color, (name, df) in zip(colors, histories.items(), strict=True):
        epochs = _epochs(df)
        for ax, (metric, _) in zip(axes, panels, strict=True):
            for prefix, kind, style in (("", "train", "-"), ("val_", "val", "--")):
                col = prefix + metric
                if col in df and df[col].notna().any():
                    ax.plot(epochs, df[col], style, color=color, label=f"{name} {kind}")
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_confusion(
    matrix, classes: Sequence[str], path: str | os.PathLike, normalize: bool = True
) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted class).

    Args:
        matrix: square counts, ``matrix[true, predicted]``.
        classes: class names in index order.
        path: the PNG to write.
        normalize: colour and label each row as fractions of that class's images.

    Returns:
        The path written.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    n = len(classes)
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts
    side = max(4.0, 0.6 * n + 2)
    fig = _figure(side + 1, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # Numbers in the cells only while they stay legible.
    if n <= 20:
        top = values.max() if values.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                color = "white" if top and values[i, j] > top / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    return _save(fig, path)


class ReliabilityBins:
    """Reliability bins filled as predictions stream past, a chunk at a time.

    Each bin (of ``bins`` equal widths over 0..1) keeps three numbers: how many
    probabilities fell in it, their sum, and how many of them were right (for a top
    class) or positive (for a label), so the memory does not grow with the predictions.
    """

    def __init__(self, bins: int = 10):
        self.edges = np.linspace(0, 1, bins + 1)
        self.count = np.zeros(bins, dtype=np.int64)
        self.total = np.zeros(bins)  # summed probabilities
        self.hits = np.zeros(bins)  # right or positive

    def add(self, conf, hit) -> None:
        """Add probabilities ``conf`` (any shape) and whether each was right, alike."""
        conf = np.asarray(conf, dtype=np.float64).reshape(-1)
        hit = np.asarray(hit, dtype=np.float64).reshape(-1)
        bins = len(self.count)
        which = np.clip(np.digitize(conf, self.edges[1:-1]), 0, bins - 1)
        self.count += np.bincount(which, minlength=bins)
        self.total += np.bincount(which, weights=conf, minlength=bins)
        self.hits += np.bincount(which, weights=hit, minlength=bins)

    def rows(self) -> list[tuple[float, float, int]]:
        """``[(mean probability, fraction right, how many)]`` of each non-empty bin."""
        return [
            (float(t / n), float(h / n), int(n))
            for n, t, h in zip(self.count, self.total, self.hits, strict=True)
            if n
        ]

    def ece(self) -> float:
        """The expected calibration error: the count-weighted mean gap between a bin's
        mean probability and its fraction right."""
        return float(np.abs(self.total - self.hits).sum() / max(int(self.count.sum()), 1))


def reliability(proba: np.ndarray, y_true: np.ndarray, bins: int = 10) -> tuple[list, float]:
    """Reliability bins of the top class's confidence, and the expected calibration error.

    Returns:
        ``[(mean confidence, accuracy, images)]`` for each non-empty bin, and the ECE
        (the images-weighted mean gap between confidence and accuracy).
    """
    tally = top_class_bins(proba, y_true, bins)
    return tally.rows(), tally.ece()


def top_class_bins(proba: np.ndarray, y_true: np.ndarray, bins: int = 10) -> ReliabilityBins:
    """A classifier's top-class confidences and whether each was right, binned."""
    tally = ReliabilityBins(bins)
    tally.add(proba.max(axis=1), proba.argmax(axis=1) == y_true)
    return tally


def plot_reliability(
    curves: dict,
    path: str | os.PathLike,
    axes: tuple[str, str] = ("confidence (top class)", "accuracy"),
    unit: str = "images",
) -> Path:
    """Reliability diagram: one curve per name in ``curves`` (name -> (proba, y_true) of
    a classifier, or a filled :class:`ReliabilityBins`), probability against how often
    it was right, the diagonal being perfect calibration; ``axes`` names the two, and
    ``unit`` what a bin counts."""
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for k, (name, curve) in enumerate(curves.items()):
        if not isinstance(curve, ReliabilityBins):
            curve = top_class_bins(*curve)
        rows, ece = curve.rows(), curve.ece()
        xs, ys, ns = zip(*rows, strict=True) if rows else ((), (), ())
        ax.plot(xs, ys, "o-", color=f"C{k}", label=f"{name} (ECE {ece:.3f})")
        for x, y, n in zip(xs, ys, ns, strict=True):
            ax.annotate(str(n), (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    ax.set_title(f"reliability (numbers: {unit} per bin)")
    return _save(fig, path)


def plot_threshold(p1: np.ndarray, positive: np.ndarray, chosen, path, name: str) -> Path:
    """Precision and recall of class ``name`` against the decision threshold on its
    probability ``p1``, the ``chosen`` threshold marked (None: 0.5, the default)."""
    thresholds = np.linspace(0.0, 1.0, 201)
    pred = p1[None, :] >= thresholds[:, None]
    tp = (pred & positive[None, :]).sum(axis=1)
    precision = np.where(pred.sum(axis=1) > 0, tp / np.maximum(pred.sum(axis=1), 1), np.nan)
    recall = tp / max(int(positive.sum()), 1)
    fig = _figure(5.6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(thresholds, precision, label="precision")
    ax.plot(thresholds, recall, label="recall")
    t = 0.5 if chosen is None else float(chosen)
    k = int(np.abs(thresholds - t).argmin())
    ax.axvline(t, color="grey", ls="--", label=f"threshold {t:.3f}")
    ax.plot([t, t], [precision[k], recall[k]], "ko")
    ax.set_xlabel(f"threshold on P({name})")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"precision {precision[k]:.3f}, recall {recall[k]:.3f} at the threshold")
    return _save(fig, path)
