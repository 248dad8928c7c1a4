"""Real Fashion-MNIST (Debian's dataset-fashion-mnist): a short run must really learn."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from imgkit.commands import cli

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.needs(
        (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
        reason="real Fashion-MNIST absent: apt-get install dataset-fashion-mnist",
    ),
]


def invoke(*argv):
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    assert result.exit_code == 0, result.output
    return result


def test_fashion_mnist_subset_learns(tmp_path):
    data, run, preds = tmp_path / "data", tmp_path / "run", tmp_path / "preds.csv"
    invoke("prep", "fashion-mnist", "-o", data, "--limit", 3000, "--idx-dir", DEBIAN_FASHION)
    info = json.loads((data / "dataset.json").read_text())
    assert len(info["classes"]) == 10
    invoke("train", data, "-o", run, "--model", "small-cnn", "--epochs", 3, "--batch-size", 64)
    invoke("predict", run, data, "--split", "test", "-o", preds)
    rows = pd.read_csv(preds)
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    test = manifest[manifest["split"] == "test"]
    assert len(rows) == len(test)
    out = tmp_path / "eval"
    invoke("eval", preds, "--truth", data, "-o", out, "--fail-under", "accuracy=0.75")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.75
