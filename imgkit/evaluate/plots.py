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
