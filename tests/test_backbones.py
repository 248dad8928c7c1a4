"""The keras.applications backbones (imgkit.models.applications) and the U-Net's encoders.

Lean by design: 32 px classifiers and 64 px U-Nets with ``weights="none"``, Keras's
steps run eagerly (tracing a 200-400 layer graph costs 5-10 s per function on a 2-core
CPU; running it once on a few 32 px images, well under one), and no network (Keras's
download is replaced by one that fails as it does offline). What every registered
model shares (tiny-size safe-mode round trips, the default input size, parameter
counts) is in test_models.py.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_model
from seg_data import write_disc_pairs
from tiny_data import make_dataset

from imgkit.bundle import code_layers, load_bundle
from imgkit.commands import cli
from imgkit.errors import OfflineError
from imgkit.models import create_model, get_spec, list_models
from imgkit.models.applications import APPLICATIONS, PIXELS
from imgkit.models.backbones import BACKBONE_LAYER, FEATURES_LAYER
from imgkit.models.unet import ENCODER_TAPS, encoder_pixels
from imgkit.train import trainer as training

NAMES = sorted(APPLICATIONS)
SIDE = 32

pytestmark = pytest.mark.filterwarnings("ignore:Even though the")  # tf.data stays traced


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def eager():
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty Keras cache and a download that fails the way Keras's does offline."""
    import keras

    def no_network(*_args, **_kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(keras.utils, "get_file", no_network)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Grey 32 px squares: 8 train, 4 val (the models copy grey into R, G and B)."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    make_dataset(root, n_train=8, n_val=4, n_test=0, size=SIDE)
    return root


@pytest.mark.parametrize("name", NAMES)
def test_registry_row(name):
    app, spec = APPLICATIONS[name], get_spec(name)
    assert spec.task == "classification" and spec.output == "auto" and spec.min_size == 32
    assert spec.input_size == (app.size, app.size) and spec.params == app.params
    assert spec.pixels == PIXELS[app.pixels]
    assert spec.options["weights"] == "imagenet"
    assert spec.options["fine_tune_last"] == app.fine_tune_last > 0


def test_default_sizes_are_kerass():
    sizes = {n: get_spec(n).input_size[0] for n in NAMES}
    assert sizes["efficientnetv2-b0"] == 224 and sizes["efficientnetv2-b1"] == 240
    assert sizes["efficientnetv2-b2"] == 260 and sizes["efficientnetv2-b3"] == 300
    assert {sizes[n] for n in ("convnext-tiny", "resnet50v2", "densenet121")} == {224}


@pytest.mark.parametrize("name", NAMES)
def test_frozen_bn_keras_preprocessing_and_one_training_step(name):
    import keras
    from keras import layers

    app = APPLICATIONS[name]
    model = shared_model(name, 3, SIDE, 3)
    backbone = model.get_layer(BACKBONE_LAYER)
    n = len(backbone.layers)
    # The default fine_tune_last is the top block; BatchNorm layers never train.
    assert backbone.layers[n - app.fine_tune_last].name == app.top_block
    trains = [lay for lay in backbone.layers if lay.trainable and lay.weights]
    assert trains and all(backbone.layers.index(lay) >= n - app.fine_tune_last for lay in trains)
    batchnorm = [lay for lay in backbone.layers if isinstance(lay, layers.BatchNormalization)]
    assert not any(lay.trainable for lay in batchnorm)
    assert model.get_layer(FEATURES_LAYER) is not None and model.output_shape == (None, 3)

    # The backbone sees what Keras itself would feed it.
    x = np.random.default_rng(0).integers(0, 256, (4, SIDE, SIDE, 3)).astype("float32")
    before = model.layers[model.layers.index(backbone) - 1]
    mine = keras.ops.convert_to_numpy(keras.Model(model.inputs, before.output)(x))
    np.testing.assert_allclose(mine, _keras_preprocessing(app.keras_name, x), atol=2e-5)

    # One step moves the top block, not the frozen rest. TensorFlow's eager CPU kernels
    # have no gradient for grouped convolutions (ConvNeXt's depthwise ones); its graph
    # mode, which training uses, has one.
    stem = next(lay for lay in backbone.layers if lay.weights)
    frozen, top = stem.get_weights()[0].copy(), trains[-1].get_weights()[0].copy()
    grouped = any(getattr(lay, "groups", 1) > 1 for lay in backbone.layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with _graph_mode(grouped):
        model.train_on_batch(x, np.array([0, 1, 2, 0]))
    assert np.array_equal(frozen, stem.get_weights()[0])
    assert not np.array_equal(top, trains[-1].get_weights()[0])
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_round_trips_in_safe_mode(name, tmp_path):
    """The backbones' share of test_models' round trip, on the build shared above, and
    of test_trust's scan: no layer carries code, so a bundle loads without --trust-code."""
    import keras

    model = shared_model(name, 3, SIDE, 3)
    x = np.random.default_rng(2).integers(0, 256, (4, SIDE, SIDE, 3)).astype("uint8")
    # A call, not predict(): no graph to trace (5-10 s for the deep backbones).
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (4, 3)
    model.save(tmp_path / "m.keras")
    assert code_layers(tmp_path / "m.keras") == []
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def _graph_mode(wanted: bool):
    import keras

    if not wanted or keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(False)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(True)


@functools.cache
def _reference_layers(keras_name: str):
    """Keras's own preprocessing layers of ``keras_name`` (None: it has a function)."""
    import inspect

    import keras

    # Keras applies the same preprocessing to every EfficientNetV2-B variant.
    keras_name = "EfficientNetV2B0" if keras_name.startswith("EfficientNetV2B") else keras_name
    constructor = getattr(keras.applications, keras_name)
    if "include_preprocessing" not in inspect.signature(constructor).parameters:
        return None
    model = constructor(include_top=False, weights=None, input_shape=(SIDE, SIDE, 3))
    kinds = (keras.layers.Rescaling, keras.layers.Normalization)
    found = []
    for layer in model.layers[1:]:
        if not isinstance(layer, kinds):
            break
        found.append(layer)
    assert found, f"{keras_name}: no preprocessing layers"
    return found


def _keras_preprocessing(keras_name: str, x):
    import keras

    found = _reference_layers(keras_name)
    if found is None:  # ResNetV2 ("tf") and DenseNet ("torch") preprocess outside
        module = {"ResNet50V2": "resnet_v2", "DenseNet121": "densenet"}[keras_name]
        return getattr(keras.applications, module).preprocess_input(x.copy())
    for layer in found:
        x = layer(x)
    return keras.ops.convert_to_numpy(x)


def test_library_train_then_predict_from_the_bundle(data, tmp_path):
    """A frozen run (the head trains on features computed once); ConvNeXt's own layers
    (LayerScale) load back in safe mode. (The U-Net run below fine-tunes end to end.)"""
    run = tmp_path / "run"
    training.train(
        data, run, model="convnext-tiny", input_size=(SIDE, SIDE), channels=1,
        weights="none", fine_tune_last=0, augment="none", epochs=1, batch_size=8,
    )  # fmt: skip
    meta = json.loads((run / "imgkit.json").read_text())
    assert meta["pixels"] == {**PIXELS["torch"], "inside_model": True}
    assert meta["transfer"]["features_cached"] is True
    model = load_bundle(run).model
    x = np.random.default_rng(1).integers(0, 256, (3, SIDE, SIDE, 1)).astype("uint8")
    probs = np.asarray(model.predict(x, verbose=0))
    assert probs.shape == (3, 1) and np.isfinite(probs).all()
    assert model.get_layer("gray_to_rgb") is not None


@pytest.mark.parametrize("name", NAMES)
def test_offline_imagenet_names_the_file_and_the_folder(name, tmp_path):
    with pytest.raises(OfflineError) as info:
        create_model(name, 2, (SIDE, SIDE))
    message = str(info.value)
    assert APPLICATIONS[name].weights in message and str(tmp_path / "kh" / "models") in message
    assert "--weights PATH" in message and len(message.splitlines()) == 1


def test_offline_error_through_the_cli_is_one_line(data, tmp_path):
    result = invoke("train", data, "-o", tmp_path / "run", "--model", "efficientnetv2-b0",
                    "--size", SIDE, "--channels", 1, "--weights", "imagenet")  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert "efficientnetv2-b0_notop.h5" in line and str(tmp_path / "kh" / "models") in line
    assert not (tmp_path / "run" / "imgkit.json").exists()


def test_a_cached_imagenet_file_is_loaded_without_the_network(tmp_path):
    """A legacy h5 file under Keras's name in $KERAS_HOME/models is what "imagenet" loads."""
    import keras

    app = APPLICATIONS["mobilenetv3-large"]
    source = keras.applications.MobileNetV3Large(
        include_top=False, weights=None, input_shape=(SIDE, SIDE, 3), include_preprocessing=False
    )
    folder = tmp_path / "kh" / "models"
    folder.mkdir(parents=True)
    source.save(folder / app.weights)  # a whole-model legacy h5: load_weights reads it
    model = create_model(app.name, 2, (SIDE, SIDE))
    got = model.get_layer(BACKBONE_LAYER).get_layer("conv").get_weights()[0]
    np.testing.assert_array_equal(got, source.get_layer("conv").get_weights()[0])


# --- the U-Net's encoders -------------------------------------------------------------


@pytest.mark.parametrize("encoder", sorted(ENCODER_TAPS))
def test_unet_encoder_builds_and_outputs_the_input_size(encoder):
    model = create_model("unet-mobilenetv2", 2, (64, 64), weights="none", encoder=encoder)
    assert model.output_shape == (None, 64, 64, 1)
    taps = model.get_layer(BACKBONE_LAYER).outputs
    assert [64 // t.shape[1] for t in taps] == [2, 4, 8, 16, 32]
    scale = model.get_layer("scale")
    pixels = encoder_pixels(encoder)
    assert (scale.scale, scale.offset) == pytest.approx((pixels["scale"], pixels["offset"]))


def test_unet_encoder_choices(data, tmp_path):
    # ConvNeXt's stem strides by 4: no 1/2 output to join, so it is no encoder.
    assert "convnext-tiny" not in ENCODER_TAPS
    assert set(ENCODER_TAPS) - {"mobilenetv2"} <= set(APPLICATIONS)
    spec = get_spec("unet-mobilenetv2")
    assert spec.options["encoder"] == "mobilenetv2"
    assert spec.pixels_with({"encoder": "densenet121"})["mode"] == "torch"
    with pytest.raises(OfflineError, match=APPLICATIONS["resnet50v2"].weights):
        spec.weights_file((64, 64), encoder="resnet50v2")
    assert all(name in invoke("train", "--help").output for name in ENCODER_TAPS)
    result = invoke("train", data, "-o", tmp_path / "r", "--model", "vgg16",
                    "--encoder", "resnet50v2")  # fmt: skip
    assert result.exit_code == 1 and "has no --encoder option" in result.output


def test_unet_trains_with_an_encoder_and_records_it(tmp_path):
    images, masks = write_disc_pairs(tmp_path / "src", n=6, size=(32, 32))
    data = tmp_path / "data"
    assert invoke("prep", images, "--masks", masks, "-o", data, "--val", "0.34").exit_code == 0
    result = invoke("train", data, "-o", tmp_path / "run", "--model", "unet-mobilenetv2",
                    "--encoder", "nope", "--weights", "none", "--size", 32)  # fmt: skip
    assert result.exit_code == 1 and "unknown U-Net encoder 'nope'" in result.output
    result = invoke("train", data, "-o", tmp_path / "run", "--model", "unet-mobilenetv2",
                    "--encoder", "efficientnetv2-b0", "--weights", "none", "--size", 32,
                    "--fine-tune-last", "all", "--epochs", 1, "--batch-size", 4)  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "imgkit.json").read_text())
    assert meta["train_args"]["encoder"] == "efficientnetv2-b0"
    assert meta["pixels"] == {**PIXELS["torch"], "inside_model": True}


def test_params_of_the_segmentation_models():
    for name in list_models(task="segmentation"):
        model = create_model(name, 2, weights="none")
        assert model.count_params() == get_spec(name).params, name


def test_list_models_shows_sizes_without_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from imgkit.commands import cli; "
        "r = CliRunner().invoke(cli, ['train', '--list-models']); print(r.output); "
        "print('TF', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("TF False")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    assert set(NAMES) <= set(rows)
    assert rows["efficientnetv2-b0"][1:5] == [
        "classification", "224x224x3", "6.25M params", "25.0 MB",
    ]  # fmt: skip
