"""``imgkit compare`` and the plots behind it."""

from __future__ import annotations

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

PNG = b"\x89PNG\r\n\x1a\n"


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
    assert (out / "curves.png").read_bytes().startswith(PNG)

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["run"]) == ["drop", "nodrop"]
    assert list(summary["dropout"]) == [0.5, 0.0]
    assert list(summary["epochs_run"]) == [2, 2]
    assert summary["best_val_loss"].le(summary["final_val_loss"]).all()
    assert summary["test_accuracy"].between(0, 1).all()
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
    assert path.read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary left behind


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion(tmp_path, normalize):
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    path = plots.plot_confusion(matrix, ["a", "b", "c"], tmp_path / "cm.png", normalize=normalize)
    assert path.read_bytes().startswith(PNG)
