"""Training curves: one run's loss and metrics per epoch, drawn into its bundle.

Figures are drawn on matplotlib's ``Figure`` with the Agg canvas, never through
pyplot, so no GUI backend is touched and nothing global changes; matplotlib is
imported only when a figure is drawn. Every PNG is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgkit.fileio import atomic_path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    # atomic_path keeps the .png suffix on the temporary name: matplotlib picks the
    # format from it.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _epochs(df) -> np.ndarray:
    return df["epoch"].to_numpy() if "epoch" in df else np.arange(1, len(df) + 1)


def _metric_panels(df) -> list[tuple[str, str]]:
    # Loss always; accuracy when the run recorded it.
    panels = [("loss", "loss")]
    if "accuracy" in df or "val_accuracy" in df:
        panels.append(("accuracy", "accuracy"))
    # Segmentation runs: pixel accuracy says little when most pixels are background.
    if "iou" in df or "val_iou" in df:
        panels.append(("iou", "IoU"))
    return panels


def plot_history(history_df, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot one run's loss and accuracy per epoch, train vs val.

    Args:
        history_df: one row per epoch with ``epoch``, ``loss``, ``accuracy`` and, when
            there was a validation split, ``val_loss`` and ``val_accuracy``.
        path: the PNG to write.
        title: a title over the figure.

    Returns:
        The path written.
    """
    panels = _metric_panels(history_df)
    fig = _figure(5 * len(panels), 3.8)
    epochs = _epochs(history_df)
    for i, (metric, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for prefix, name, style in (("", "train", "-"), ("val_", "val", "--")):
            col = prefix + metric
            if col in history_df and history_df[col].notna().any():
                ax.plot(epochs, history_df[col], style, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)
