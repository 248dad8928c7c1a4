"""``imgkit compare`` and the plots behind it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiny_data import SIZE, make_dataset

from imgkit.commands import cli
from imgkit.evaluate import plots
from imgkit.evaluate.runs import SUMMARY_COLUMNS
from imgkit.train import curves
from imgkit.train import trainer as training

# Matplotlib's first two line colours (C0, C1): the first and second curve of a panel.
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)


def _pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _count(pixels: np.ndarray, rgb) -> int:
    """How many pixels have this colour (within antialiasing's rounding)."""
    return int(np.all(np.abs(pixels - np.array(rgb)) <= 2, axis=-1).sum())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    make_dataset(root / "data")
    out = []
    for name, dropout in (("drop", 0.5), ("nodrop", 0.0)):
        training.train(
            root / "data",
            root / name,
            model="small-cnn",
            epochs=2,
            batch_size=8,
            dropout=dropout,
            input_size=(SIZE, SIZE),
        )
        out.append(root / name)
    return out


def test_compare_writes_curves_and_summary(runs, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["compare", *map(str, runs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "summary.csv")
    # Two panels (loss, accuracy) of 6 x 4.2 inches at 100 dpi, one colour a run.
    pixels = _pixels(out / "curves.png")
    assert pixels.shape == (420, 1200, 3)
    assert _count(pixels, BLUE) > 500 and _count(pixels, ORANGE) > 500

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["run"]) == ["drop", "nodrop"]
    assert list(summary["dropout"]) == [0.5, 0.0]
    assert list(summary["epochs_run"]) == [2, 2]
    # Every figure is the run's own: its history's last and best epochs, its test score.
    for row, run in zip(summary.itertuples(), runs, strict=True):
        history = pd.read_csv(run / "history.csv")
        for col in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert getattr(row, f"final_{col}") == pytest.approx(history[col].iloc[-1])
            best = history[col].min() if col.endswith("loss") else history[col].max()
            assert getattr(row, f"best_{col}") == pytest.approx(best)
        meta = json.loads((run / "imgkit.json").read_text())
        assert row.test_accuracy == pytest.approx(meta["metrics"]["test"]["accuracy"])
        assert row.path == str(run)
    # The table is on stderr, not mixed into the data.
    assert "nodrop" in result.stderr


def test_compare_refuses_a_folder_that_is_not_a_run(runs, tmp_path):
    result = CliRunner().invoke(
        cli, ["compare", str(runs[0]), str(tmp_path), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "not a model bundle" in result.output and "Traceback" not in result.output


def test_plot_history_without_val(tmp_path):
    history = pd.DataFrame(
        {"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8]}
    )
    path = curves.plot_history(history, tmp_path / "h.png", title="t")
    # Two panels of 5 x 3.8 inches; the train curves (C0) drawn, no val curve (C1).
    pixels = _pixels(path)
    assert pixels.shape == (380, 1000, 3)
    assert _count(pixels, BLUE) > 500 and _count(pixels, ORANGE) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary left behind


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion(tmp_path, normalize):
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    path = plots.plot_confusion(matrix, ["a", "b", "c"], tmp_path / "cm.png", normalize=normalize)
    # Each cell is filled with its value's colour on the Blues scale: a row's fraction of
    # its class (an empty row stays 0), or the count against the largest.
    import matplotlib

    if normalize:
        values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    else:
        values = matrix / matrix.max()
    pixels = _pixels(path)
    for v in np.unique(values):
        rgb = [round(255 * c) for c in matplotlib.colormaps["Blues"](v)[:3]]
        assert _count(pixels, rgb) > 3000, (v, rgb)
