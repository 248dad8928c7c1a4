"""Training: bundles, refusal to overwrite, resume, early stopping, and that it learns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiny_data import SIZE, make_dataset, squares

from imgkit.bundle import BUNDLE_FORMAT, load_bundle, read_meta, save_meta
from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.polarity import detect_polarity
from imgkit.errors import BadBundleError, BadDatasetError, BadInputError, OutputExistsError
from imgkit.train import trainer as training

# Small and quick: 12x12 images, batch 8, a few epochs.
FAST = dict(model="small-cnn", epochs=3, batch_size=8, input_size=(SIZE, SIZE))
FAST_ARGS = [
    "--model",
    "small-cnn",
    "--epochs",
    "3",
    "--batch-size",
    "8",
    "--size",
    f"{SIZE}x{SIZE}",
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "squares"
    make_dataset(root)
    return root


@pytest.fixture(scope="module")
def bundle(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    # LR 0.003: at the default 0.001 three epochs leave it calling every image one class
    # (accuracy 0.5), where a score computed the wrong way round reads the same.
    result = invoke("train", data, "-o", run, *FAST_ARGS, "--lr", "0.003")
    assert result.exit_code == 0, result.output
    return run, result


def test_train_writes_a_complete_bundle(bundle, data):
    run, result = bundle
    assert result.stdout.strip() == str(run)
    assert "epoch 1/3" in result.stderr and "val_acc" in result.stderr
    assert {p.name for p in run.iterdir()} == {
        "model.keras",
        "imgkit.json",
        "history.csv",
        "curves.png",
    }

    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["task"] == "classification"
    assert meta["model"] == "small-cnn"
    assert meta["classes"] == ["bright", "dim"]
    assert meta["input_size"] == [SIZE, SIZE] and meta["channels"] == 1
    assert meta["pixels"] == {"scale": pytest.approx(1 / 255), "offset": 0.0, "inside_model": True}
    assert meta["polarity"] == "dark"
    assert meta["output"] == "softmax"
    assert meta["train_args"]["dropout"] == 0.5 and meta["train_args"]["epochs"] == 3
    assert meta["epochs_run"] == 3 and 1 <= meta["best_epoch"] <= 3
    assert meta["monitor"] == "val_loss"
    assert set(meta["metrics"]) == {"val", "test"}
    assert meta["dataset"]["hash"] and meta["format"] == BUNDLE_FORMAT

    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(history.columns)

    # The recorded scores are the saved model's own on the data, the best epoch's kept.
    b = load_bundle(run, task="classification")
    ds = Dataset.load(data)
    for split in ("val", "test"):
        proba = b.model.predict(np.asarray(ds.arrays(split, (SIZE, SIZE), 1)), verbose=0)
        y = ds.labels(split)
        scores = meta["metrics"][split]
        assert scores["accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == y))
        assert scores["accuracy"] >= 0.75  # it learned: the squares are easy to tell apart
        p_true = proba[np.arange(len(y)), y].astype(np.float64)
        assert scores["log_loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-4)
    best = history.set_index("epoch").loc[meta["best_epoch"]]
    assert meta["metrics"]["val"]["loss"] == pytest.approx(best["val_loss"], rel=1e-3)
    assert best["val_loss"] == history["val_loss"].min()

    assert b.classes == ["bright", "dim"] and b.input_size == (SIZE, SIZE) and b.polarity == "dark"
    x, _ = squares(4)
    assert b.model.predict(x, verbose=0).shape == (4, 2)


def test_rerun_is_refused_and_overwrite_replaces(bundle, data, tmp_path):
    # Its own copy: the module's bundle stays as trained for the other tests.
    run = Path(shutil.copytree(bundle[0], tmp_path / "run"))
    before = (run / "imgkit.json").read_text()
    result = invoke("train", data, "-o", run, *FAST_ARGS)
    assert result.exit_code == 1
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert (run / "imgkit.json").read_text() == before

    result = invoke("train", data, "-o", run, *FAST_ARGS, "--epochs", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_meta(run)["epochs_run"] == 1


def test_interrupted_run_resumes_to_the_same_result(data, tmp_path):
    full = tmp_path / "full"
    training.train(data, full, **FAST)

    run = tmp_path / "run"

    def interrupt(report):
        if report["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(data, run, **FAST, on_epoch=interrupt)
    assert (run / "checkpoints" / "state.json").is_file()
    assert not (run / "imgkit.json").exists()

    # Neither a plain re-run nor a consumer mistakes it for a bundle.
    result = invoke("train", data, "-o", run, *FAST_ARGS)
    assert result.exit_code == 1 and "--resume" in result.output
    with pytest.raises(BadBundleError, match="--resume"):
        load_bundle(run)
    # Settings are those of the run; contradicting them is an error.
    with pytest.raises(BadInputError, match="--epochs 3"):
        training.train(data, run, epochs=5, resume=True)

    result = invoke("train", data, "-o", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr
    meta = read_meta(run)
    assert meta["epochs_run"] == 3 and meta["resumed"] is True
    assert not (run / "checkpoints").exists()
    a = pd.read_csv(full / "history.csv").drop(columns="seconds")
    b = pd.read_csv(run / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)


def test_resume_refuses_another_dataset_or_model(data, tmp_path):
    other = tmp_path / "other"
    make_dataset(other, seed=7)
    run = tmp_path / "run"

    def interrupt(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(data, run, **FAST, on_epoch=interrupt)
    with pytest.raises(BadInputError, match="not the dataset"):
        training.train(other, run, resume=True)
    result = invoke("train", data, "-o", run, "--resume", "--model", "fashion-cnn")
    assert result.exit_code == 1 and "--model small-cnn" in result.output


def test_early_stopping_stops_and_restores_the_best(data, tmp_path):
    # Script the validation loss (best at epoch 2) with a callback that runs before
    # imgkit's own, and keep the weights after every epoch to check which ones the
    # bundle got.
    import keras

    scripted = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]
    seen = []

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.get_weights())
            logs["val_loss"] = scripted[epoch]

    run = tmp_path / "run"
    meta = training.train(
        data, run, **{**FAST, "epochs": 6}, patience=2, callbacks_extra=[Script()]
    )
    assert meta["epochs_run"] == 4 and meta["best_epoch"] == 2 and meta["early_stopped"]
    assert len(seen) == 4  # one fit: stopped after epoch 4, not run to 6
    saved = load_bundle(run).model.get_weights()
    for got, want in zip(saved, seen[1], strict=True):
        np.testing.assert_array_equal(got, want)


def test_learns_a_simple_problem(tmp_path):
    # No val split here, so early stopping watches the training loss (and says so).
    data = tmp_path / "data"
    make_dataset(data, n_train=240, n_val=0, n_test=40, seed=3)
    meta = training.train(
        data, tmp_path / "run", model="fashion-cnn", epochs=4, batch_size=8, input_size=(SIZE, SIZE)
    )
    assert meta["monitor"] == "loss" and "no val split" in meta["notes"][0]
    assert meta["metrics"]["test"]["accuracy"] >= 0.9


def test_unknown_model_and_list_models(data, tmp_path):
    result = invoke("train", data, "-o", tmp_path / "run", "--model", "nope")
    assert result.exit_code == 1
    assert "unknown model 'nope'" in result.output and "fashion-cnn" in result.output
    assert not (tmp_path / "run").exists()

    result = invoke("train", "--list-models")
    assert result.exit_code == 0
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names == sorted(names)
    assert {"fashion-cnn", "mobilenetv2", "small-cnn", "vgg16"} <= set(names)


def test_dataset_must_be_classification_with_two_classes(tmp_path):
    one = tmp_path / "one"
    make_dataset(one, classes=("only",))
    with pytest.raises(BadDatasetError, match="at least 2"):
        training.train(one, tmp_path / "r1", **FAST)
    seg = tmp_path / "seg"
    make_dataset(seg, task="segmentation")
    with pytest.raises(BadDatasetError, match="segmentation"):
        training.train(seg, tmp_path / "r2", **FAST)


def test_a_folder_that_is_not_a_bundle_is_left_alone(data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a model bundle"):
        training.train(data, out, **FAST, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("fill", "expected"),
    [((220, 10), "light"), ((10, 220), "dark"), (None, None)],
)
def test_detect_polarity(fill, expected):
    rng = np.random.default_rng(0)
    if fill is None:
        x = rng.integers(0, 256, size=(50, 20, 20, 3)).astype(np.uint8)
    else:
        background, thing = fill
        x = np.full((50, 20, 20, 3), background, dtype=np.uint8)
        x[:, 5:15, 5:15] = thing
    assert detect_polarity(x) == expected


def test_load_bundle_errors(bundle, tmp_path):
    run, _ = bundle
    with pytest.raises(BadBundleError, match="no such model bundle"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadBundleError, match="not a model bundle"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(BadBundleError, match="for classification, not segmentation"):
        load_bundle(run, task="segmentation")

    newer = tmp_path / "newer"
    save_meta(newer, {**read_meta(run), "format": BUNDLE_FORMAT + 1, "imgkit_version": "9.0"})
    with pytest.raises(BadBundleError, match="imgkit 9.0.*upgrade"):
        load_bundle(newer)
    no_model = tmp_path / "no_model"
    save_meta(no_model, read_meta(run))
    with pytest.raises(BadBundleError, match="model.keras is missing"):
        load_bundle(no_model)


def test_streams_from_the_cache_when_too_big_for_memory(data, tmp_path, monkeypatch):
    # Pretend the arrays are too big: training goes through a keras.utils.PyDataset.
    monkeypatch.setattr(training, "IN_MEMORY_LIMIT", 0)
    meta = training.train(data, tmp_path / "run", **{**FAST, "epochs": 1})
    assert meta["epochs_run"] == 1 and set(meta["metrics"]) == {"val", "test"}


def test_near_best_keeps_the_later_of_two_tied_epochs(data, tmp_path):
    # fashion-cnn keeps the latest epoch within 2% of the lowest val loss: scripted,
    # epoch 3 (0.505) ties with epoch 2 (0.5) and is kept; epoch 4 (0.6) is not; and
    # patience counts from the strict best, so the run stops after epoch 4.
    import keras

    scripted = [1.0, 0.5, 0.505, 0.6, 0.9]
    seen = []

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.get_weights())
            logs["val_loss"] = scripted[epoch]

    notes = []
    meta = training.train(
        data, tmp_path / "run", model="fashion-cnn", epochs=5, batch_size=8,
        input_size=(SIZE, SIZE), patience=2, callbacks_extra=[Script()], on_info=notes.append,
    )  # fmt: skip
    assert meta["epochs_run"] == 4 and meta["best_epoch"] == 3 and meta["early_stopped"]
    assert any("latest within 2% of the best val_loss 0.5000" in n for n in notes), notes
    saved = load_bundle(tmp_path / "run").model.get_weights()
    for got, want in zip(saved, seen[2], strict=True):
        np.testing.assert_array_equal(got, want)
