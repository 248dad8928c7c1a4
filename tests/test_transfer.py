"""Transfer learning (mobilenetv2), the training recipe, and temperature calibration.

Fast by design: 32x32 RGB images, a few dozen of them, no network. Pretrained weights
come from a file each test makes from a freshly built backbone whose BatchNorm
statistics are set from one batch (a random backbone with untouched statistics gives
features of about 1e-13, nothing to train a head on); the real ImageNet file from
../shared is used only where the test is about that file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need
from tiny_data import make_dataset

from imgkit.bundle import load_bundle, read_meta
from imgkit.commands import cli
from imgkit.data.dataset import Dataset
from imgkit.data.dataset_write import write_dataset
from imgkit.data.records import Record
from imgkit.errors import BadInputError, OfflineError
from imgkit.models import create_model, get_spec
from imgkit.models.backbones import (
    BACKBONE_LAYER,
    find_layer,
    imagenet_file_name,
    imagenet_size,
)
from imgkit.train import trainer as training
from imgkit.train.calibration import as_two_columns, fit_temperature, log_loss, temper
from imgkit.train.checkpoints import RunState, load_trainer
from imgkit.train.recipe import class_weights, sample_weights, targets

SIDE = 32
SHARED = Path(__file__).resolve().parents[2] / "shared" / "weights"
SHARED_FILE = SHARED / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
# A quick mobilenetv2 run: tiny images, batch 8, our own weights file.
QUICK = dict(model="mobilenetv2", input_size=(SIDE, SIDE), batch_size=8)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def brightness_pairs(n: int, size: int = SIDE, seed: int = 0):
    """Class 0 ("cat"): dark noisy RGB images; class 1 ("dog"): bright ones."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, size, size, 3)) + 150 * y[:, None, None, None]
    x += rng.integers(0, 30, size=(n, 1, 1, 1))
    return np.clip(x, 0, 255).astype(np.uint8), y


def make_rgb_dataset(folder: Path, counts=(40, 16, 16), size: int = SIDE) -> Path:
    records, arrays = [], {}
    for k, (split, n) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
        if not n:
            continue
        x, y = brightness_pairs(n, size, seed=k)
        arrays[split] = x
        records += [
            Record(path=f"images/{split}/{i}.png", label=("cat", "dog")[c], split=split)
            for i, c in enumerate(y)
        ]
    write_dataset(folder, records, [], task="classification", seed=0)
    ds = Dataset.load(folder)
    for split, x in arrays.items():
        ds.store_arrays(split, x)
    return folder


def save_backbone_weights(path: Path, size: int = SIDE) -> Path:
    """A MobileNetV2 no-top weights file with BatchNorm statistics set from one batch."""
    import keras

    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), include_top=False, weights=None
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # the moving statistics become this batch's
    x = np.random.default_rng(5).uniform(-1, 1, (16, size, size, 3)).astype("float32")
    backbone(x, training=True)
    backbone.save_weights(path)
    return path


@pytest.fixture(scope="module")
def rgb_data(tmp_path_factory):
    return make_rgb_dataset(tmp_path_factory.mktemp("rgb") / "pets")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_backbone_weights(tmp_path_factory.mktemp("weights") / "tiny.weights.h5")


def _backbone(model):
    backbone = find_layer(model, BACKBONE_LAYER)
    assert backbone is not None
    return backbone


def _bn_layers(backbone):
    from keras import layers

    return [lay for lay in backbone.layers if isinstance(lay, layers.BatchNormalization)]


# --- the registry entry -----------------------------------------------------------------


def test_spec_says_mobilenetv2_takes_weights():
    spec = get_spec("mobilenetv2")
    assert spec.takes_weights and not get_spec("small-cnn").takes_weights
    assert spec.options["weights"] == "imagenet" and spec.options["fine_tune_last"] == 20
    assert spec.options["features_at"] == "block_13_expand_relu" and spec.recipe.head_epochs == 30
    assert spec.pixels == {"scale": pytest.approx(1 / 127.5), "offset": -1.0}
    assert (spec.recipe.patience, spec.recipe.label_smoothing, spec.recipe.augment) == (
        5, 0.0, "light",
    )  # fmt: skip
    assert spec.output_for(2) == "sigmoid" and spec.output_for(3) == "softmax"


@pytest.mark.parametrize("fine_tune_last", [0, 10, 30, -1])
def test_freezing_follows_fine_tune_last_and_bn_never_trains(fine_tune_last):
    model = create_model(
        "mobilenetv2", 2, (SIDE, SIDE), weights="none", fine_tune_last=fine_tune_last
    )
    backbone = _backbone(model)
    assert all(not lay.trainable for lay in _bn_layers(backbone))
    n = len(backbone.layers)
    last = n if fine_tune_last == -1 else fine_tune_last
    tail = backbone.layers[n - last :] if last else []
    expected = [lay.name for lay in tail if lay not in _bn_layers(backbone)]
    assert [lay.name for lay in backbone.layers if lay.trainable] == expected
    # The head always trains; its output is one sigmoid unit for two classes.
    assert model.get_layer("head_dense").trainable and model.output_shape == (None, 1)


def test_three_classes_get_three_outputs():
    # Built once, not in each case above: a MobileNetV2 build costs seconds.
    assert create_model("mobilenetv2", 3, (SIDE, SIDE), weights="none").output_shape == (None, 3)


def test_too_small_and_bad_weights_are_clear(tmp_path):
    with pytest.raises(BadInputError, match="at least 32x32"):
        create_model("mobilenetv2", 2, (16, 16), weights="none")
    junk = tmp_path / "junk.h5"
    junk.write_text("not weights")
    with pytest.raises(BadInputError, match="junk.h5: does not fit"):
        create_model("mobilenetv2", 2, (SIDE, SIDE), weights=str(junk))
    with pytest.raises(BadInputError, match="no such weights file"):
        create_model("mobilenetv2", 2, (SIDE, SIDE), weights=str(tmp_path / "missing.h5"))


def test_weights_path_is_loaded(weights_file):
    import keras

    model = create_model("mobilenetv2", 2, (SIDE, SIDE), weights=str(weights_file))
    want = keras.applications.MobileNetV2(
        input_shape=(SIDE, SIDE, 3), include_top=False, weights=None
    )
    want.load_weights(weights_file)
    got = _backbone(model)
    for name in ("Conv1", "bn_Conv1", "block_13_expand"):
        for a, b in zip(
            got.get_layer(name).get_weights(), want.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_imagenet_file_name_follows_keras():
    assert imagenet_size((96, 96)) == 96 and imagenet_size((224, 224)) == 224
    # Keras's rule is an exact square size or 224, not the nearest one.
    assert imagenet_size((100, 100)) == 224 and imagenet_size((96, 128)) == 224
    assert imagenet_file_name((160, 160)).endswith("_1.0_160_no_top.h5")


def test_offline_imagenet_without_a_cached_file_says_what_to_put_where(
    rgb_data, tmp_path, monkeypatch
):
    import keras

    def offline(*_args, **_kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    run = tmp_path / "run"
    result = invoke(
        "train",
        rgb_data,
        "-o",
        run,
        "--model",
        "mobilenetv2",
        "--size",
        SIDE,
        "--weights",
        "imagenet",
    )
    assert result.exit_code == 1, result.output
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in result.output
    assert str(tmp_path / "kh" / "models") in result.output
    assert "--weights PATH" in result.output and "Traceback" not in result.output
    assert not (run / "imgkit.json").exists()
    with pytest.raises(OfflineError):
        create_model("mobilenetv2", 2, (96, 96))


@pytest.mark.realdata
def test_cached_imagenet_file_is_used_offline(tmp_path, monkeypatch):
    need(SHARED_FILE.is_file(), f"no shared ImageNet weights at {SHARED_FILE}")
    import keras

    models = tmp_path / "kh" / "models"
    models.mkdir(parents=True)
    # Keras names the file by input size; the weights are the same for every size.
    (models / imagenet_file_name((96, 96))).symlink_to(SHARED_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))

    def no_network(*_args, **_kwargs):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    model = create_model("mobilenetv2", 2, (96, 96), weights="imagenet")
    want = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    want.load_weights(SHARED_FILE)
    np.testing.assert_array_equal(
        _backbone(model).get_layer("Conv1").get_weights()[0],
        want.get_layer("Conv1").get_weights()[0],
    )


# --- the recipe's pieces ----------------------------------------------------------------


def test_balanced_class_weights():
    y = np.array([0] * 6 + [1] * 2)
    w = class_weights(y, 2, "balanced")
    np.testing.assert_allclose(w, [8 / 12, 8 / 4])
    per_image = sample_weights(y, w)
    # Each class carries the same total weight; the mean weight stays 1.
    assert per_image[y == 0].sum() == pytest.approx(per_image[y == 1].sum())
    assert per_image.mean() == pytest.approx(1.0)
    assert class_weights(y, 2, "none") is None
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 3, "balanced"), [0.75, 0, 1.5])


def test_balanced_weights_change_the_loss():
    import keras

    y = np.array([0] * 6 + [1] * 2)
    p = np.full((8, 1), 0.3, dtype="float32")  # P(class 1): wrong-ish on the rare class
    loss = keras.losses.BinaryCrossentropy()
    t = targets(y, "sigmoid", 2, 0.0)
    plain = float(loss(t, p))
    weighted = float(loss(t, p, sample_weight=sample_weights(y, class_weights(y, 2, "balanced"))))
    assert weighted > plain


def test_targets_for_each_output():
    y = np.array([0, 2, 1])
    assert targets(y, "softmax", 3, 0.0).dtype == np.int64
    np.testing.assert_array_equal(targets(y, "softmax", 3, 0.1), np.eye(3)[y])
    assert targets(np.array([0, 1]), "sigmoid", 2, 0.1).shape == (2, 1)


def _logits_and_labels(n=4000, k=3, sharpness=2.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * sharpness
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return logits, p, labels


def test_temperature_recovers_a_known_temperature():
    # Labels drawn from softmax(logits); the model reports softmax(logits * 2.5),
    # i.e. over-confident by T = 2.5.
    logits, _, labels = _logits_and_labels()
    over = np.exp(2.5 * logits)
    over /= over.sum(axis=1, keepdims=True)
    t = fit_temperature(over, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    assert log_loss(temper(over, t), labels) < log_loss(over, labels)


def test_temperature_is_one_when_calibrated_and_works_for_sigmoid():
    _, p, labels = _logits_and_labels(seed=1)
    assert fit_temperature(p, labels) == pytest.approx(1.0, abs=0.08)
    assert fit_temperature(np.array([[0.9, 0.1]]), np.array([0])) == 1.0  # one class: nothing
    # A sigmoid's P(class 1): under-confident by T = 0.5 (sigmoid(logit / 2)).
    rng = np.random.default_rng(2)
    logit = rng.normal(size=5000) * 3
    y = (rng.random(5000) < 1 / (1 + np.exp(-logit))).astype(int)
    soft = 1 / (1 + np.exp(-logit / 2))
    assert fit_temperature(soft, y) == pytest.approx(0.5, rel=0.1)
    np.testing.assert_allclose(temper(soft, 0.5)[:, 1], 1 / (1 + np.exp(-logit)), rtol=1e-9)


def test_fit_temperature_finds_the_minimum_and_stops_at_its_bounds():
    logits, _, labels = _logits_and_labels(n=1000)
    # The search against brute force on a 0.001 grid around it (for 1.4 the minimum lies
    # above the coarse grid's best point, for 2.5 below it).
    for factor in (1.4, 2.5):
        over = np.exp(factor * logits)
        over /= over.sum(axis=1, keepdims=True)
        grid = np.arange(factor - 0.3, factor + 0.3, 0.001)
        brute = grid[np.argmin([log_loss(temper(over, g), labels) for g in grid])]
        assert fit_temperature(over, labels) == pytest.approx(brute, abs=2e-3)
    # A gain over T = 1 (about 0.22 here) below min_gain keeps T = 1.
    assert fit_temperature(over, labels, min_gain=0.3) == 1.0
    assert fit_temperature(over, labels, min_gain=0.1) == fit_temperature(over, labels) > 2
    # A val split the model separates perfectly: T stops at its floor, 0.4, not near 0.
    y = np.array([0, 1] * 10)
    assert fit_temperature(np.where(y == 1, 0.8, 0.2), y) == 0.4
    # Confident answers unrelated to the labels: T goes to its ceiling, 20.
    assert fit_temperature(np.array([0.1, 0.1, 0.9, 0.9] * 5), np.array([0, 1] * 10)) == 20.0
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0)) == 1.0


def test_temper_and_log_loss_by_hand():
    np.testing.assert_allclose(as_two_columns([0.2, 0.9]), [[0.8, 0.2], [0.1, 0.9]])
    np.testing.assert_allclose(as_two_columns([[0.2], [0.9]]), [[0.8, 0.2], [0.1, 0.9]])
    three = np.array([[0.2, 0.2, 0.5], [0.1, 0.3, 0.6]])
    np.testing.assert_array_equal(as_two_columns(three), three)
    np.testing.assert_array_equal(temper(three, 1), three)  # T = 1: the numbers as they are
    np.testing.assert_allclose(temper([[0.8, 0.2], [0.1, 0.9]], 2), [[2 / 3, 1 / 3], [0.25, 0.75]])
    # Tiny probabilities and a small T overflow a naive softmax; row by row they do not.
    np.testing.assert_array_equal(temper([[1e-300, 1e-200], [0.5, 0.5]], 0.1), [[0, 1], [0.5, 0.5]])
    np.testing.assert_allclose(temper([[1.0, 0.0]], 2), [[1, 0]], atol=1e-12)  # log 0 clipped
    for bad in (0, -1):
        with pytest.raises(ValueError, match="temperature must be positive"):
            temper(three, bad)
    assert log_loss([[0.5, 0.5], [0.2, 0.8]], [0, 1]) == pytest.approx(-(np.log(0.5 * 0.8)) / 2)
    assert str(log_loss([[0.0, 1.0]], [1])) == "0.0"  # not "-0.0" in imgkit.json
    assert log_loss([[1.0, 0.0]], [1]) == pytest.approx(-np.log(1e-15))
    assert np.isnan(log_loss(np.zeros((0, 2)), []))
    with pytest.raises(ValueError, match="2 probability rows but 3 labels"):
        log_loss([[0.5, 0.5], [0.5, 0.5]], [0, 1, 1])


def test_label_smoothing_then_calibration_beats_the_smoothing_floor(tmp_path):
    # Smoothing 0.1 keeps the model near 0.95, a log loss floor of about 0.051; the
    # temperature fitted on val sharpens it back below the floor. The lr is pinned so
    # that a change of fashion-cnn's default does not change this run.
    data = tmp_path / "data"
    make_dataset(data, n_train=160, n_val=40, n_test=40, seed=4)
    meta = training.train(
        data, tmp_path / "run", model="fashion-cnn", epochs=8, batch_size=16, lr=2e-3,
        input_size=(12, 12), label_smoothing=0.1, patience=0,
    )  # fmt: skip
    val = meta["metrics"]["val"]
    assert val["accuracy"] == 1.0 and val["log_loss"] > 0.04
    assert 0 < meta["temperature"] < 1
    assert val["log_loss_calibrated"] < 0.051 and val["log_loss_calibrated"] < val["log_loss"]
    assert meta["train_args"]["label_smoothing"] == 0.1
    assert "log_loss_calibrated" in meta["metrics"]["test"]


def test_no_val_split_means_no_temperature(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, n_train=32, n_val=0, n_test=8)
    meta = training.train(
        data, tmp_path / "run", model="small-cnn", epochs=1, batch_size=8, input_size=(12, 12)
    )
    assert "temperature" not in meta
    assert any("no temperature" in note for note in meta["notes"])


# --- training mobilenetv2 ---------------------------------------------------------------


def test_feature_cache_equals_training_through_the_frozen_backbone(
    rgb_data, weights_file, tmp_path
):
    settings = dict(
        **QUICK, weights=str(weights_file), fine_tune_last=0, augment="none", epochs=3, lr=3e-3
    )
    fast = training.train(rgb_data, tmp_path / "fast", **settings)
    slow = training.train(rgb_data, tmp_path / "slow", **settings, cache_features=False)
    assert fast["transfer"]["features_cached"] and not slow["transfer"]["features_cached"]
    assert fast["transfer"]["trainable_backbone_layers"] == 0
    for split in ("val", "test"):
        for key, value in slow["metrics"][split].items():
            # Float summation order (threads, two test workers) moves these in the 3rd
            # digit: a 0.6784 against 0.6792 log loss was seen.
            assert fast["metrics"][split][key] == pytest.approx(value, rel=5e-3, abs=1e-3), key
    a = load_bundle(tmp_path / "fast").model.get_weights()
    b = load_bundle(tmp_path / "slow").model.get_weights()
    # Pooled features summed in another order differ in the last bits. Adam turns a
    # gradient that is all but zero into a step of the full learning rate whose sign
    # is that noise, so a handful of weights can drift far (0.012 for one of 327,680
    # was seen). The rest must agree; the metrics above show the models do.
    for x, y in zip(a, b, strict=True):
        apart = ~np.isclose(x, y, rtol=5e-3, atol=2e-3)
        assert apart.mean() <= 1e-4, f"{apart.sum()} of {apart.size} weights differ"

    meta = read_meta(tmp_path / "fast")
    assert meta["output"] == "sigmoid" and meta["channels"] == 3
    assert meta["pixels"] == {
        "scale": pytest.approx(1 / 127.5),
        "offset": -1.0,
        "inside_model": True,
    }
    assert meta["train_args"]["weights"] == str(weights_file.resolve())
    assert meta["train_args"]["augment"] == "none" and meta["train_args"]["patience"] == 5
    assert meta["temperature"] > 0 and meta["mixed_precision"] is False


def test_interrupted_transfer_run_resumes(rgb_data, weights_file, tmp_path):

    run = tmp_path / "run"
    settings = dict(
        **QUICK, weights=str(weights_file), fine_tune_last=12, augment="light", epochs=2
    )

    def interrupt(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(rgb_data, run, **settings, on_epoch=interrupt)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and not state["features"]
    # What resume loads keeps the frozen layers, the frozen BN and the schedule.
    saved = load_trainer(run / "checkpoints", RunState.from_state(state))
    backbone = _backbone(saved)
    assert all(not lay.trainable for lay in _bn_layers(backbone))
    # (Layers without weights, such as the input layer, may come back trainable: no matter.)
    # The rule test_freezing_follows_fine_tune_last_and_bn_never_trains checks on a new
    # build: the last 12 layers with weights, less the BatchNorm ones.
    trainable = [lay.name for lay in backbone.layers if lay.trainable and lay.weights]
    bn = _bn_layers(backbone)
    expected = [lay.name for lay in backbone.layers[-12:] if lay.weights and lay not in bn]
    assert trainable and trainable == expected
    assert int(saved.optimizer.iterations.numpy()) == 5  # 40 images / batch 8
    assert type(saved.optimizer.learning_rate).__name__ != "float"

    with pytest.raises(BadInputError, match="--fine-tune-last 12, not 3"):
        training.train(rgb_data, run, resume=True, fine_tune_last=3)
    result = invoke("train", rgb_data, "-o", run, "--resume", "--fine-tune-last", "12")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr
    meta = read_meta(run)
    assert meta["resumed"] and meta["epochs_run"] == 2
    assert meta["transfer"]["trainable_backbone_layers"] == len(trainable)
    assert meta["train_args"]["augment"] == "light"
    # Augmentation is inside the model but idle at inference: a safe-mode load
    # predicts the same twice.
    model = load_bundle(run).model
    x, _ = brightness_pairs(6, seed=9)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weights_options_are_refused_for_the_cnns(rgb_data, tmp_path):
    with pytest.raises(BadInputError, match="takes no --weights"):
        training.train(rgb_data, tmp_path / "r", model="small-cnn", weights="none")
    result = invoke(
        "train",
        rgb_data,
        "-o",
        tmp_path / "r",
        "--model",
        "mobilenetv2",
        "--weights",
        tmp_path / "nope.h5",
    )
    assert result.exit_code == 1 and "no such file" in result.output


# --- recipes and the features layer -------------------------------------------------------


def test_features_at_ends_the_backbone_there():
    model = create_model(
        "mobilenetv2", 2, (SIDE, SIDE), weights="none", features_at="block_13_expand_relu"
    )
    backbone = _backbone(model)
    assert backbone.layers[-1].name == "block_13_expand_relu"
    assert model.get_layer("features").output.shape[-1] == 576
    with pytest.raises(BadInputError, match="--features-at 'block_99': the backbone has no"):
        create_model("mobilenetv2", 2, (SIDE, SIDE), weights="none", features_at="block_99")


def test_recipe_seed_is_seed_001_and_given_options_still_win():
    from imgkit.train.resolve import resolve_settings
    from imgkit.train.settings import setting_names

    def resolve(**given):
        return resolve_settings({**dict.fromkeys(setting_names()), "model": "mobilenetv2",
                                    "weights": "none", **given})  # fmt: skip

    seed = resolve(recipe="seed")
    assert (seed.fine_tune_last, seed.augment, seed.lr, seed.label_smoothing) == (
        30, "standard", 1e-4, 0.1,
    )  # fmt: skip
    assert (seed.features_at, seed.schedule, seed.recipe) == ("out_relu", "cosine", "seed")
    assert resolve(recipe="seed", lr=3e-4).lr == 3e-4
    assert resolve().recipe == "default"
    with pytest.raises(BadInputError, match="has no recipe 'fast' \\(it has: default, seed\\)"):
        resolve(recipe="fast")
    with pytest.raises(BadInputError, match="has no --features-at"):
        resolve_settings({**dict.fromkeys(setting_names()), "model": "small-cnn",
                             "features_at": "out_relu"})  # fmt: skip


def test_head_first_trains_the_head_on_cached_features_then_fine_tunes(
    rgb_data, weights_file, tmp_path
):
    import keras

    said = []
    meta = training.train(
        rgb_data, tmp_path / "run", **QUICK, weights=str(weights_file), fine_tune_last=4,
        augment="light", head_epochs=4, epochs=1, lr=1e-4, on_info=said.append,
    )  # fmt: skip
    first = meta["transfer"]["head_first"]
    assert 1 <= first["best_epoch"] <= first["epochs"] <= 4 and "best_val_loss" in first
    assert any("head trained first on cached backbone features" in s for s in said)
    assert meta["train_args"]["head_epochs"] == 4 and meta["epochs_run"] == 1
    # The fine-tuning phase trained the backbone's last layers (BN frozen, as ever).
    model = load_bundle(tmp_path / "run").model
    backbone = find_layer(model, BACKBONE_LAYER)
    fresh = keras.applications.MobileNetV2(
        input_shape=(SIDE, SIDE, 3), include_top=False, weights=None
    )
    fresh.load_weights(weights_file)
    moved = [
        lay.name for lay in backbone.layers if lay.weights
        and not np.allclose(lay.get_weights()[0], fresh.get_layer(lay.name).get_weights()[0])
    ]  # fmt: skip
    assert moved and set(moved) <= {lay.name for lay in backbone.layers[-4:]}
