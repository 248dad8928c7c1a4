"""VGG16 transfer learning: the breast histopathology (IDC) recipe of seed 003.

A frozen ImageNet VGG16 backbone (no top) and the seed's head: Flatten, Dense(256,
ReLU), Dropout(0.5), Dense(1, sigmoid) for two classes (softmax for more). At the
seed's 50x50 patches the backbone ends at 1x1x512, so the flattened features are 512
numbers; with the backbone frozen, training computes them once and fits only the head.

VGG16's own input preprocessing ("caffe": RGB to BGR, then the ImageNet channel means
subtracted, no scaling) is the model's first layer: a 1x1 convolution whose fixed,
non-trainable kernel is the channel permutation and whose bias is minus the means.
A plain Conv2D loads in Keras's safe mode (a Lambda would not) and computes exactly
``keras.applications.vgg16.preprocess_input``. With one input channel the same layer
copies the grey value into B, G and R, so ImageNet weights work on grayscale too.

Second phase (fine-tuning the top block): ``--weights RUN/model.keras`` starts from an
earlier vgg16 bundle's weights, backbone and head, and ``--fine-tune-last 4`` unfreezes
block 5 (three convolutions and its pooling layer); use a low learning rate (1e-5).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgkit.errors import BadInputError
from imgkit.models import Recipe, register_model
from imgkit.models.backbones import (
    BACKBONE_LAYER,
    FEATURES_LAYER,
    cached_weights_file,
    find_layer,
    freeze,
    load_weights_file,
)

# keras.applications.vgg16.preprocess_input (mode "caffe"): BGR order, minus these
# ImageNet means (B, G, R), no scaling.
BGR_MEANS = (103.939, 116.779, 123.68)
_PIXELS = {
    "scale": 1.0,
    "offset": 0.0,
    "mode": "caffe",
    "channel_order": "BGR",
    "mean": list(BGR_MEANS),
}
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
PREPROCESS_LAYER = "caffe"
# Block 5 (3 convolutions + pooling) is the last 4 of the backbone's 19 layers.
TOP_BLOCK_LAYERS = 4


def imagenet_weights_file() -> Path:
    """Keras's cached VGG16 no-top ImageNet file (the same file at every input size)."""
    return cached_weights_file(
        IMAGENET_FILE,
        IMAGENET_ORIGIN,
        "no ImageNet VGG16 weights ship with imgkit; any copy of Keras's VGG16 no-top file works",
    )


def caffe_kernel(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed 1x1 convolution that is VGG16's preprocessing: (kernel, bias).

    Output channel j (B, G, R) takes input channel 2 - j (R, G, B), or the one grey
    channel; the bias subtracts the ImageNet mean of channel j.
    """
    kernel = np.zeros((1, 1, channels, 3), dtype=np.float32)
    for out in range(3):
        kernel[0, 0, (2 - out) if channels == 3 else 0, out] = 1.0
    return kernel, -np.asarray(BGR_MEANS, dtype=np.float32)


@register_model(
    "vgg16",
    task="classification",
    input_size=(50, 50),
    channels=3,
    description="ImageNet VGG16, frozen (features cached) + Flatten/Dense 256/Dropout 0.5 "
    "head; the breast histopathology (IDC) recipe",
    pixels=_PIXELS,
    recipe=Recipe(batch_size=64, lr=1e-3, schedule="constant", patience=5, augment="none"),
    output="auto",
    min_size=32,
    weights_file=lambda _size: imagenet_weights_file(),
    params=14_846_285,
)
def vgg16(
    num_classes: int,
    input_size: tuple[int, int],
    channels: int,
    dropout: float = 0.5,
    weights: str = "imagenet",
    fine_tune_last: int = 0,
    head_units: int = 256,
):
    """VGG16 backbone (nested model ``backbone``) with the seed-003 head.

    Args:
        num_classes: 2 gives one sigmoid unit (P(classes[1])), more a softmax.
        input_size: (height, width), each at least 32 (VGG16 pools five times).
        channels: 3, or 1 (the grey value feeds B, G and R).
        dropout: rate of the dropout before the last layer; 0 removes it.
        weights: "imagenet" (Keras's cached file), "none" (random), a VGG16 no-top
            weights file, or an earlier vgg16 bundle's ``model.keras`` (all its
            weights, head included: the start of a fine-tuning phase).
        fine_tune_last: backbone layers (from the end) that train; 0 (default) freezes
            the backbone, 4 unfreezes block 5, -1 trains it all.
        head_units: units of the head's hidden Dense layer.
    """
    import keras
    from keras import layers

    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    weights = str(weights)
    if weights.lower() in ("none", "imagenet"):
        weights = weights.lower()
    bundle_model = weights != "none" and weights != "imagenet" and weights.endswith(".keras")

    backbone = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(*input_size, 3), name=BACKBONE_LAYER
    )
    if weights == "imagenet":
        load_weights_file(backbone, imagenet_weights_file(), "VGG16", needs="VGG16 (no top)")
    elif weights != "none" and not bundle_model:
        load_weights_file(backbone, os.fspath(weights), "VGG16", needs="VGG16 (no top)")
    freeze(backbone, int(fine_tune_last))

    single = num_classes == 2
    inputs = keras.Input(shape=(*input_size, channels), name="pixels")
    # float32 whatever the precision policy: the means need it on 0-255 inputs.
    caffe = layers.Conv2D(3, 1, name=PREPROCESS_LAYER, dtype="float32", trainable=False)
    x = caffe(inputs)
    x = backbone(x)
    x = layers.Flatten(name=FEATURES_LAYER)(x)
    x = layers.Dense(head_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="head_dropout")(x)
    outputs = layers.Dense(
        1 if single else num_classes,
        activation="sigmoid" if single else "softmax",
        dtype="float32",
        name="probs",
    )(x)
    model = keras.Model(inputs, outputs, name="vgg16_classifier")
    caffe.set_weights(list(caffe_kernel(channels)))
    if bundle_model:
        _copy_from_bundle(model, Path(weights))
    return model


def _copy_from_bundle(model, path: Path) -> None:
    """Give ``model`` the weights of the same-named layers of a saved vgg16 bundle model."""
    import keras

    if not path.is_file():
        raise BadInputError(f"{path}: no such model file")
    try:
        source = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # a corrupt or foreign file: Keras raises many kinds
        raise BadInputError(f"{path}: cannot load it as a Keras model ({e})") from e
    for layer in model.layers:
        if not layer.weights:
            continue
        found = find_layer(source, layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if found is None or [tuple(w.shape) for w in found.weights] != shapes:
            raise BadInputError(
                f"{path}: not a vgg16 model of the same shape (layer {layer.name!r} is missing "
                "or differs: same input size, channels, classes and head units needed)"
            )
        layer.set_weights(found.get_weights())
