"""The model registry: every registered model builds, predicts and survives a save."""

from __future__ import annotations

import numpy as np
import pytest

from imgkit.errors import BadInputError
from imgkit.models import create_model, get_spec, list_models, resolved_options
from imgkit.models.applications import APPLICATIONS

CLASSIFIERS = list_models(task="classification")
# The keras.applications backbones share one builder and have their own tests
# (test_backbones.py), their round trips included: there one build of each serves
# several tests (conftest.shared_model), where each costs 3-8 s on a 2-core CPU.
ROUND_TRIPS = [
    (name, channels) for name in CLASSIFIERS for channels in (1, 3) if name not in APPLICATIONS
]


def offline(name: str) -> dict:
    """Options that build ``name`` without a network: no pretrained weights."""
    return {"weights": "none"} if get_spec(name).takes_weights else {}


def test_registry_has_the_cnns():
    assert {"fashion-cnn", "small-cnn"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_spec_is_complete(name):
    spec = get_spec(name)
    assert spec.task in ("classification", "segmentation")
    assert len(spec.input_size) == 2 and min(spec.input_size) > 0
    assert spec.channels in (1, 3)
    assert spec.recipe.batch_size > 0 and spec.recipe.lr > 0
    assert spec.description
    assert {"scale", "offset"} <= set(spec.pixels)  # vgg16 adds mode, channel_order, mean


@pytest.mark.parametrize(("name", "channels"), ROUND_TRIPS)
def test_builds_at_a_tiny_size_and_round_trips(name, channels, tmp_path):
    import keras

    spec = get_spec(name)
    side = max(12, spec.min_size)
    model = create_model(name, 3, input_size=(side, side), channels=channels, **offline(name))
    x = np.random.default_rng(0).integers(0, 256, size=(4, side, side, channels)).astype("uint8")
    # A call, not predict(): no graph to trace (5-10 s for the deep backbones).
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    units = 1 if spec.output_for(3) == "sigmoid" else 3
    assert probs.shape == (4, units)
    if spec.output_for(3) == "softmax":
        np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)

    # Pixel scaling lives in standard layers, so a safe-mode load works and agrees.
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)), probs, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_default_input_and_scaling_layer(name):
    from keras import layers

    spec = get_spec(name)
    model = create_model(name, 2, **offline(name))
    assert tuple(model.input_shape[1:]) == (*spec.input_size, spec.channels)
    # --list-models shows the registry's count without building: it must be this one.
    assert model.count_params() == spec.params
    if spec.pixels.get("mode") == "caffe":
        # VGG16's per-channel preprocessing is a fixed 1x1 convolution (test_histopathology).
        assert model.layers[1].name == "caffe" and not model.layers[1].trainable
        return
    scaling = next(lay for lay in model.layers if isinstance(lay, layers.Rescaling))
    assert scaling.scale == pytest.approx(spec.pixels["scale"])
    assert scaling.offset == pytest.approx(spec.pixels["offset"])


def _dropout_rates(model) -> list[float]:
    from keras import layers

    return [lay.rate for lay in model.layers if isinstance(lay, layers.Dropout)]


def test_fashion_cnn_dropout_scales_both_layers():
    assert _dropout_rates(create_model("fashion-cnn", 10)) == pytest.approx([0.3, 0.4])
    assert _dropout_rates(create_model("fashion-cnn", 10, dropout=0.2)) == pytest.approx(
        [0.15, 0.2]
    )
    assert _dropout_rates(create_model("fashion-cnn", 10, dropout=0)) == []


def test_small_cnn_is_the_seed_network():
    from keras import layers

    model = create_model("small-cnn", 10)
    kinds = [type(lay).__name__ for lay in model.layers if not isinstance(lay, layers.InputLayer)]
    assert kinds == [
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert _dropout_rates(model) == [0.5]
    assert _dropout_rates(create_model("small-cnn", 10, dropout=0)) == []


def test_unknown_model_lists_the_names():
    with pytest.raises(BadInputError, match="unknown model 'nope'.*fashion-cnn.*small-cnn"):
        create_model("nope", 2)


def test_bad_options_are_clear():
    with pytest.raises(BadInputError, match="does not take width"):
        create_model("small-cnn", 2, width=3)
    with pytest.raises(BadInputError, match="dropout must be in"):
        create_model("small-cnn", 2, dropout=1.5)
    with pytest.raises(BadInputError, match="at least 2 classes"):
        create_model("small-cnn", 1)
    with pytest.raises(BadInputError, match="cannot be built at 3x3x1"):
        create_model("small-cnn", 2, input_size=(3, 3))


def test_resolved_options_fill_defaults():
    assert resolved_options("fashion-cnn") == {"dropout": 0.4}
    assert resolved_options("small-cnn", dropout=0.0) == {"dropout": 0.0}


def test_shift_augmentation_moves_whole_pixels_only():
    """Augment level shift flips and shifts by at most 2 pixels at 28x28, never blending."""
    from imgkit.train.augment import augmentation_layers

    image = np.zeros((64, 28, 28, 1), np.float32)
    image[:, 10, 8, 0] = 200.0  # one bright pixel, left of centre
    x = image
    for layer in augmentation_layers("shift", seed=3):
        x = layer(x, training=True)
    x = np.asarray(x)
    rows, cols = [], []
    for view in x[..., 0]:
        # Nothing interpolated: the one pixel survives whole, nothing else lights up.
        assert sorted(np.unique(view).tolist()) == [0.0, 200.0]
        (r,), (c,) = np.nonzero(view)
        rows.append(r)
        cols.append(min(abs(c - 8), abs(c - (27 - 8))))  # mirrored or not
    assert max(abs(r - 10) for r in rows) <= 2 and max(cols) <= 2
    assert len(set(rows)) > 1  # it does shift
    for layer in augmentation_layers("shift", seed=3):
        image = layer(image, training=False)
    assert np.asarray(image)[:, 10, 8, 0].tolist() == [200.0] * 64  # inference: unchanged


def test_flip_augmentation_only_mirrors():
    """Augment level flip mirrors some images left-right, exactly, and nothing else."""
    from imgkit.train.augment import augmentation_layers

    image = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.float32)
    (layer,) = augmentation_layers("flip", seed=3)
    out = np.asarray(layer(image, training=True))
    mirrored = [bool(np.array_equal(o, i[:, ::-1])) for o, i in zip(out, image, strict=True)]
    kept = [bool(np.array_equal(o, i)) for o, i in zip(out, image, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 10 < sum(mirrored) < 54  # about half, seeded
    assert np.array_equal(np.asarray(layer(image, training=False)), image)
