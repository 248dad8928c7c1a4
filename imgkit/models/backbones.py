"""Pretrained backbones: where their weights come from, and what of them trains.

Shared by the transfer-learning builders (``mobilenet.py``) and by training, which
splits such a model at its ``features`` layer to train the head on cached features.

Weights offline: ``keras.applications`` downloads ImageNet files into its cache
(``$KERAS_HOME/models``, default ``~/.keras/models``) and fails at once, with a bare
``Exception("URL fetch failure ...")``, where there is no network. imgkit looks in
that cache itself, tries the download only when the file is not there, and turns a
failure into an :class:`OfflineError` that says which file to put where.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from imgkit.errors import BadInputError, OfflineError
from imgkit.models import Recipe

# The square input sizes Keras has MobileNetV2 ImageNet files for.
IMAGENET_SIZES = (96, 128, 160, 192, 224)
IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"

# The layer where a transfer model's frozen part ends and its head begins: the pooled
# backbone features. Training on cached features computes everything up to it once.
FEATURES_LAYER = "features"

# The registry settings every ImageNet classification backbone shares (mobilenetv2 and
# the keras.applications rows): the head first on cached features, then a low peak
# rate that fine-tunes the top of the backbone without wrecking it. Measured on
# mobilenetv2 (the hard benchmark, README); no ImageNet file of the others is at hand
# offline to measure them, so they take the same.
TRANSFER_RECIPE = Recipe(
    batch_size=32,
    lr=1e-4,
    schedule="cosine",
    patience=5,
    label_smoothing=0.0,
    augment="light",
    head_epochs=30,
)
# What every such backbone is: a sigmoid for two classes, and at least 32 px a side.
TRANSFER_MODEL = {"output": "auto", "min_size": 32}
BACKBONE_LAYER = "backbone"


def imagenet_size(input_size: tuple[int, int]) -> int:
    """The input size whose ImageNet file Keras loads for ``input_size``.

    Keras's own rule (``keras.applications.MobileNetV2``): a square input of one of
    96/128/160/192/224 gets that size's file; any other input gets the 224 file. It is
    not "the nearest" size. The convolution weights do not depend on the input size,
    so every file fits every size.
    """
    h, w = int(input_size[0]), int(input_size[1])
    return h if h == w and h in IMAGENET_SIZES else 224


def imagenet_file_name(input_size: tuple[int, int], alpha: float = 1.0) -> str:
    """The file name Keras caches MobileNetV2 no-top ImageNet weights under."""
    size = imagenet_size(input_size)
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}_no_top.h5"


def keras_home() -> Path:
    """Keras's cache folder as Keras would choose it now: ``$KERAS_HOME`` or ``~/.keras``."""
    home = os.environ.get("KERAS_HOME")
    return Path(home).expanduser() if home else Path("~/.keras").expanduser()


def imagenet_weights_file(input_size: tuple[int, int]) -> Path:
    """The MobileNetV2 ImageNet no-top weights file for ``input_size``, offline first.

    Looks in the Keras cache; only when the file is not there, asks Keras to download
    it (into ``$KERAS_HOME/models``).

    Raises:
        OfflineError: not cached and the download failed; the message names the file,
            the folder to put it in, and the ``--weights PATH`` alternative.
    """
    return cached_weights_file(
        imagenet_file_name(input_size),
        IMAGENET_ORIGIN,
        "any copy of the MobileNetV2 1.0 no-top weights works, e.g. the 224 file from "
        "../shared/weights copied or linked under this name",
    )


def cached_weights_file(name: str, origin: str, advice: str = "") -> Path:
    """A Keras-cached weights file ``name``, offline first; downloaded from ``origin`` + name.

    Raises:
        OfflineError: not cached and the download failed; the message names the file,
            the folder to put it in (``advice`` says what else fits), and the
            ``--weights PATH`` / ``--weights none`` alternatives.
    """
    target = keras_home() / "models"
    if (target / name).is_file():
        return target / name
    import keras

    try:
        # get_file prints its progress with print(); stdout carries data only.
        with contextlib.redirect_stdout(sys.stderr):
            path = keras.utils.get_file(
                name, origin + name, cache_subdir="models", cache_dir=str(keras_home())
            )
    except Exception as e:  # Keras raises a bare Exception when offline
        hint = f" ({advice})" if advice else ""
        raise OfflineError(
            f"cannot download the ImageNet weights {name} ({_first_line(e)}); put that file "
            f"in {target}/{hint}, or pass --weights PATH to a weights file, or --weights none"
        ) from e
    return Path(path)


def imagenet_file_for(model: str, input_size: tuple[int, int], options: dict | None = None) -> Path:
    """The ImageNet weights file registry model ``model`` loads at ``input_size``.

    ``options`` are the builder options the model is built with; those the model's
    ``weights_file`` takes (the U-Net's ``encoder``) choose the file.
    """
    import inspect

    from imgkit.models import get_spec

    spec = get_spec(model)
    if spec.weights_file is None:
        raise BadInputError(f"model {model!r} does not start from ImageNet weights")
    takes = inspect.signature(spec.weights_file).parameters
    chosen = {k: v for k, v in (options or {}).items() if k in takes and v is not None}
    return spec.weights_file(input_size, **chosen)


def weights_source(weights, imagenet_file: Callable[[], Path], channels: int = 3) -> str | None:
    """The weights file a backbone loads, from ``--weights``.

    "imagenet" (any case) is ``imagenet_file()`` (the cached ImageNet file, or an
    OfflineError), "none" (any case) is None, anything else is a path. ``channels``
    is what the backbone itself takes: ImageNet weights need 3.
    """
    weights = str(weights)
    if weights.lower() in ("imagenet", "none"):
        weights = weights.lower()
    if weights == "imagenet" and channels != 3:
        raise BadInputError(
            f"ImageNet weights need 3 channels (RGB), not {channels}; use --channels 3"
        )
    if weights == "imagenet":
        return os.fspath(imagenet_file())
    return None if weights == "none" else os.fspath(weights)


def mobilenetv2_weights_source(weights, channels: int, input_size: tuple[int, int]) -> str | None:
    """The weights file a MobileNetV2 backbone loads, from ``--weights`` (see weights_source)."""
    return weights_source(weights, lambda: imagenet_weights_file(input_size), channels)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def load_weights_file(
    model,
    path: str | os.PathLike,
    what: str = "the backbone",
    needs: str = "MobileNetV2 (alpha 1.0, no top)",
) -> None:
    """Load a weights file into ``model``: legacy h5 (by topology) or Keras 3 ``.weights.h5``.

    Raises:
        BadInputError: the file is missing, unreadable, or made for another network.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such weights file")
    try:
        with warnings.catch_warnings():
            # A mismatched Keras 3 file warns once per layer before it raises.
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as e:  # h5py OSError, Keras ValueError and others
        raise BadInputError(
            f"{path}: does not fit {what} ({_first_line(e)}); it needs {needs} "
            "weights in Keras h5 format"
        ) from e


def freeze(backbone, fine_tune_last: int) -> None:
    """Freeze all but the last ``fine_tune_last`` layers of ``backbone``, and every BN layer.

    BatchNormalization layers stay frozen even among the trainable ones: in Keras 3,
    ``fit()`` runs a backbone's BN in training mode (batch statistics, moving averages
    updated) unless the layer itself has ``trainable=False``, whatever ``training``
    the backbone was called with; measured here, trainable BN took a fine-tuned
    MobileNetV2 from log loss 0.31 to 0.51.

    Args:
        backbone: a functional ``keras.Model``.
        fine_tune_last: how many of its last layers train (counting as
            ``backbone.layers`` does, input layer included, like the seed notebook's
            ``layers[:-30]``); 0 freezes all, -1 trains all.
    """
    from keras import layers

    n = len(backbone.layers)
    first = 0 if fine_tune_last < 0 else n - min(int(fine_tune_last), n)
    # Setting a container's flag sets every sublayer's, so set the container first.
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= first and not isinstance(layer, layers.BatchNormalization)


def truncate(backbone, layer_name: str):
    """``backbone`` ending at its layer ``layer_name`` (itself when that is its last layer).

    The new model shares the layers (and loaded weights) up to that point and keeps the
    name ``backbone``; the later layers are dropped.

    Raises:
        BadInputError: no such layer, with the names of a few that are.
    """
    import keras

    if backbone.layers[-1].name == layer_name:
        return backbone
    names = [layer.name for layer in backbone.layers]
    if layer_name not in names:
        taps = [n for n in names if n.endswith(("_relu", "_add", "_project"))][-8:]
        raise BadInputError(
            f"--features-at {layer_name!r}: the backbone has no such layer "
            f"(its last ones include {', '.join(taps)})"
        )
    return keras.Model(backbone.input, backbone.get_layer(layer_name).output, name=backbone.name)


def find_layer(model, name: str):
    """The layer called ``name`` in ``model`` or in a model nested in it, or None."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            found = find_layer(layer, name)
            if found is not None:
                return found
    return None


def has_features(model) -> bool:
    """Whether ``model`` (top level) splits into a frozen part and a head at ``features``."""
    return any(layer.name == FEATURES_LAYER for layer in model.layers)


def feature_extractor(model):
    """The part of ``model`` up to its pooled features, sharing its layers."""
    import keras

    return keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output, name="extractor")


def head_model(model):
    """The head of ``model``: its layers after ``features``, on a features input, shared.

    The head is a chain (each layer feeds the next), so calling the same layer
    objects on a new input gives a model that trains ``model``'s own head weights.
    """
    import keras

    names = [layer.name for layer in model.layers]
    start = names.index(FEATURES_LAYER) + 1
    features = model.get_layer(FEATURES_LAYER)
    inputs = keras.Input(shape=tuple(features.output.shape[1:]), name="features_in")
    x = inputs
    for layer in model.layers[start:]:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def classifier_head(x, num_classes: int, dropout: float, head_units: int, l2: float):
    """The transfer head on backbone output ``x``: the ``features`` layer, then the classifier.

    GlobalAveragePooling2D (the ``features`` layer), BatchNormalization, Dense(ReLU,
    L2) (none when ``head_units`` is 0: a linear head), Dropout, Dense(sigmoid, L2) for
    two classes (one unit, P(classes[1])), softmax for more. Its layer names are what
    training's cached-features path and tests read.
    """
    from keras import layers, regularizers

    x = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    # Momentum 0.9, not Keras's 0.99: the moving statistics then settle within tens of
    # steps, so a head trained on a few hundred images (or kept from an early best
    # epoch) predicts with the statistics it trained with.
    x = layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    if head_units:  # 0: a linear head (logistic regression on the standardised features)
        x = layers.Dense(
            head_units, activation="relu", kernel_regularizer=regularizers.L2(l2), name="head_dense"
        )(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="head_dropout")(x)
    single = num_classes == 2
    # float32 even under mixed precision: probabilities near 0 and 1 need the range.
    return layers.Dense(
        1 if single else num_classes,
        activation="sigmoid" if single else "softmax",
        kernel_regularizer=regularizers.L2(l2),
        dtype="float32",
        name="probs",
    )(x)
