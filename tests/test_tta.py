"""imgkit tta: the views, one forward pass per batch, determinism, the CSV; eval of several files.

The bundle's model is a fixed linear map of the pixels (Rescaling, Flatten, Dense with
seeded weights), so unlike a brightness model it sees where things are: a flip, a shift
or a zoom changes its answer, and an exact match with ``predict`` means something.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from imgkit.commands import cli
from imgkit.infer.options import InferOptions
from imgkit.infer.predict import Predictor, apply_temperature, csv_columns
from imgkit.infer.run import predict_inputs
from imgkit.infer.tta import (
    IDENTITY,
    MAX_SHIFT,
    MAX_ZOOM,
    View,
    apply_view,
    view_params,
)

CLASSES = ["cat", "dog"]
SIZE = 8


def _save_bundle(folder: Path, **meta) -> Path:
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    weights = np.random.default_rng(0).normal(0, 0.5, size=(SIZE * SIZE, 2))
    dense.set_weights([weights, np.zeros(2)])
    folder.mkdir(parents=True)
    keras.Model(inputs, out).save(folder / "model.keras")
    info = {
        "task": "classification",
        "model": "linear",
        "classes": CLASSES,
        "input_size": [SIZE, SIZE],
        "channels": 1,
        "resize": "stretch",
        "pixels": {"scale": 1 / 255, "offset": 0.0, "inside_model": True},
        "polarity": None,
        "output": "softmax",
        **meta,
    }
    (folder / "imgkit.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"plain": _save_bundle(root / "plain"), "hot": _save_bundle(root / "hot", temperature=3)}


@pytest.fixture
def images(tmp_path, monkeypatch):
    """imgs/ with seven noisy 8x8 grayscale PNGs (lossless: pixels exactly as written)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    Path("imgs").mkdir()
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(f"imgs/{i}.png")
    return Path("imgs")


def _run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def _frame(result) -> pd.DataFrame:
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout))


# --- the views ------------------------------------------------------------------------


@pytest.fixture
def batch():
    return np.random.default_rng(2).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)


def test_flip_really_flips(batch):
    out = apply_view(batch, View(flip=True))
    np.testing.assert_array_equal(out, batch[:, :, ::-1])
    # One image or a batch: the same view.
    np.testing.assert_array_equal(apply_view(batch[1], View(flip=True)), out[1])


def test_shift_moves_whole_pixels_and_repeats_the_edge(batch):
    out = apply_view(batch, View(shift=(0.0, 0.2)))  # 2 of 10 columns to the right
    assert out.shape == batch.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 2:], batch[:, :, :-2])
    np.testing.assert_array_equal(out[:, :, :2], np.repeat(batch[:, :, :1], 2, axis=2))
    up = apply_view(batch, View(shift=(-0.25, 0.0)))  # 2 of 8 rows up
    np.testing.assert_array_equal(up[:, :-2], batch[:, 2:])


def test_zoom_keeps_shape_and_dtype_and_zooms_in(batch):
    out = apply_view(batch, View(zoom=1.1))
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert not np.array_equal(out, batch)
    flat = np.full((1, 8, 8, 1), 77, np.uint8)
    np.testing.assert_array_equal(apply_view(flat, View(True, (0.1, -0.1), 1.1)), flat)
    # Zoom 2 on a left-dark/right-light image: the dark half now fills the left half
    # only from its inner quarter on, so the dark region keeps its side and the edge
    # column stays the outermost value.
    ramp = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))[None, :, :, None]
    zoomed = apply_view(ramp, View(zoom=2.0))
    assert zoomed[0, 0, 0, 0] > ramp[0, 0, 0, 0] and zoomed[0, 0, -1, 0] < ramp[0, 0, -1, 0]
    assert np.all(np.diff(zoomed[0, 0, :, 0].astype(int)) >= 0)


def test_identity_is_an_exact_copy(batch):
    out = apply_view(batch, IDENTITY)
    np.testing.assert_array_equal(out, batch)
    assert out is not batch


def test_views_depend_only_on_seed_and_index():
    assert view_params(0, 0) == IDENTITY and view_params(9, 0) == IDENTITY
    assert view_params(0, 1) == View(flip=True)
    # Another process (another hash seed, another global RNG state) draws the same view.
    code = "from imgkit.infer.tta import view_params as v\nprint(v(5, 7))\nprint(v(-1, 3))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert other.returncode == 0, other.stderr
    np.random.seed(1)
    random.seed(1)
    view_params(5, 8)  # drawing another view first changes nothing either
    assert other.stdout.splitlines() == [str(view_params(5, 7)), str(view_params(-1, 3))]
    assert view_params(5, 7) != view_params(6, 7)
    views = [view_params(s, k) for s in range(3) for k in range(2, 40)]
    assert len(set(views)) == len(views)
    assert {v.flip for v in views} == {True, False}
    for v in views:
        assert all(abs(s) <= MAX_SHIFT for s in v.shift)
        assert 1.0 <= v.zoom <= 1.0 + MAX_ZOOM
    # Any int seed works: a negative one is folded into 64 bits, not refused.
    assert view_params(-1, 3) == view_params(2**64 - 1, 3) != view_params(1, 3)


# --- the command ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["plain", "hot"])
def test_one_view_is_exactly_predict(bundles, images, which):
    want = _run("predict", bundles[which], images)
    assert want.exit_code == 0, want.output
    got = _run("tta", bundles[which], images, "-n", "1", "--batch-size", "64")
    assert got.exit_code == 0, got.output
    assert got.stdout == want.stdout
    assert list(_frame(got).columns) == csv_columns(CLASSES)


def test_tta_csv_has_predicts_columns_and_rows(bundles, images):
    df = _frame(_run("tta", bundles["plain"], images, "-n", "4"))
    assert list(df.columns) == ["path", "label", "confidence", "p_cat", "p_dog"]
    assert list(df["path"]) == [f"imgs/{i}.png" for i in range(7)]
    np.testing.assert_allclose(df[["p_cat", "p_dog"]].sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(df["confidence"], df[["p_cat", "p_dog"]].max(axis=1))
    plain = _frame(_run("predict", bundles["plain"], images))
    assert not np.allclose(df["p_dog"], plain["p_dog"])  # the views did change something


def test_deterministic_and_independent_of_batch_size(bundles, images):
    args = ("tta", bundles["plain"], images, "-n", "6", "--seed", "3")
    a = _run(*args, "--batch-size", "2")
    b = _run(*args, "--batch-size", "2")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert a.stdout == b.stdout
    pd.testing.assert_frame_equal(_frame(a), _frame(_run(*args, "--batch-size", "64")), atol=1e-6)
    other = _frame(_run("tta", bundles["plain"], images, "-n", "6", "--seed", "4"))
    assert not np.allclose(other["p_dog"], _frame(a)["p_dog"])


def test_to_a_file_prints_its_path(bundles, images):
    result = _run("tta", bundles["plain"], images, "-n", "3", "-o", "out/tta.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "out/tta.csv"
    assert len(pd.read_csv("out/tta.csv")) == 7
    assert "7 images predicted" in result.stderr


def test_nothing_readable_is_exit_1(bundles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.png").write_bytes(b"garbage")
    result = _run("tta", bundles["plain"], "bad.png", "-o", "tta.csv")
    assert result.exit_code == 1
    assert "no image could be predicted" in result.output
    assert not Path("tta.csv").exists()


# --- the library ----------------------------------------------------------------------


class _CountingModel:
    """Stands in for the Keras model and records the size of every forward pass."""

    def __init__(self, model):
        self.model = model
        self.calls: list[int] = []

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        return self.model.predict_on_batch(x)


def test_one_forward_pass_per_batch_and_the_mean_then_temperature(bundles, images, monkeypatch):
    from imgkit.bundle import load_bundle

    bundle = load_bundle(bundles["hot"])
    counter = _CountingModel(bundle.model)
    monkeypatch.setattr(bundle, "_model", counter)
    options = InferOptions(batch_size=3)
    frames = list(predict_inputs(bundle, [images], options=options, views=4, seed=0))
    assert [len(f) for f in frames] == [3, 3, 1]
    assert counter.calls == [12, 12, 4]  # batch x views, one call each

    # By hand: each view's raw probabilities, their mean, then the temperature once.
    x = np.stack([np.asarray(Image.open(f"imgs/{i}.png"))[:, :, None] for i in range(7)])
    predictor = Predictor(bundle)
    raw = [predictor.raw_proba(apply_view(x, view_params(0, k))) for k in range(4)]
    want = apply_temperature(np.mean(raw, axis=0), 3)
    got = pd.concat(frames)[["p_cat", "p_dog"]].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --- eval of several predictions files ------------------------------------------------


@pytest.fixture
def truth(images):
    pd.DataFrame(
        {"path": [f"imgs/{i}.png" for i in range(7)], "label": ["cat", "dog"] * 3 + ["cat"]}
    ).to_csv("truth.csv", index=False)
    return Path("truth.csv")


def test_eval_compares_predict_and_tta(bundles, images, truth):
    assert _run("predict", bundles["plain"], images, "-o", "preds.csv").exit_code == 0
    assert _run("tta", bundles["plain"], images, "-o", "tta.csv").exit_code == 0
    alone = _run("eval", "preds.csv", "--truth", truth)
    assert alone.exit_code == 0, alone.output
    single = json.loads(alone.stdout)

    result = _run("eval", "preds.csv", "tta.csv", "--truth", truth)
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert [s["predictions"] for s in summaries] == ["preds.csv", "tta.csv"]
    assert summaries[0] == single  # the first file scores as it does alone
    assert summaries[0]["log_loss"] != summaries[1]["log_loss"]
    # One comparison table on stderr: a row per file, both log losses in it.
    for s in summaries:
        row = next(line for line in result.stderr.splitlines() if s["predictions"] in line)
        assert f"{s['log_loss']:.4f}" in row and f"{s['roc_auc']:.4f}" in row
    assert "log_loss" in result.stderr and "roc_auc" in result.stderr


def test_eval_several_to_a_folder(bundles, images, truth):
    assert _run("predict", bundles["plain"], images, "-o", "a/preds.csv").exit_code == 0
    assert _run("tta", bundles["plain"], images, "-n", "3", "-o", "b/preds.csv").exit_code == 0
    result = _run("eval", "a/preds.csv", "b/preds.csv", "--truth", truth, "-o", "ev")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path("ev/comparison.csv"))
    # Two files with one stem: the second folder is told apart, nothing overwritten.
    assert sorted(p.name for p in Path("ev").iterdir()) == ["comparison.csv", "preds", "preds-2"]
    for sub in ("preds", "preds-2"):
        assert (Path("ev") / sub / "metrics.json").is_file()
        assert (Path("ev") / sub / "confusion.png").is_file()
    table = pd.read_csv("ev/comparison.csv")
    assert list(table["predictions"]) == ["a/preds.csv", "b/preds.csv"]
    assert {"accuracy", "log_loss", "balanced_accuracy", "roc_auc", "pr_auc"} <= set(table)


def test_eval_gates_apply_to_every_file(bundles, images, truth):
    assert _run("predict", bundles["plain"], images, "-o", "preds.csv").exit_code == 0
    assert _run("tta", bundles["plain"], images, "-o", "tta.csv").exit_code == 0
    both = ("eval", "preds.csv", "tta.csv", "--truth", truth)
    ungated = _run(*both)
    assert ungated.exit_code == 0, ungated.output
    accs = [s["accuracy"] for s in json.loads(ungated.stdout)]
    bar = max(accs) + 0.01  # above both: each file must be named
    result = _run(*both, "--fail-under", f"accuracy={bar}")
    assert result.exit_code == 3
    assert "preds.csv: accuracy" in result.stderr and "tta.csv: accuracy" in result.stderr
    assert json.loads(result.stdout)[1]["predictions"] == "tta.csv"  # still printed
    assert _run(*both, "--fail-under", "accuracy=0").exit_code == 0


def test_eval_stdin_only_once(truth):
    result = _run("eval", "-", "-", "--truth", truth, input="")
    assert result.exit_code == 2
