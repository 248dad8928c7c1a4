"""Classification backbones from ``keras.applications``, one table row each.

Every row registers one model built like ``mobilenetv2``: the ImageNet backbone (no
top) as a nested model named ``backbone`` whose BatchNormalization layers never train,
the pooled ``features`` layer (so a frozen run trains its head on features computed
once), the same head, and the backbone's own preprocessing as the model's first layers.

Preprocessing is imgkit's layers at the top of the model, not Keras's: the backbone is
built with ``include_preprocessing=False`` where Keras offers it, and the same
computation comes first as standard layers (``scale``, then ``normalize`` for the
"torch" kind), so a bundle shows how it scales pixels and loads in safe mode. None of
these layers has weights, so ImageNet files load into the backbone unchanged. A
one-channel input is copied into R, G and B first (``gray_to_rgb``): the backbone
always sees RGB, and ImageNet weights work on grayscale images too.

Default ``--fine-tune-last``: the backbone's top block, i.e. its last repeated unit
and the layers after it (EfficientNetV2: the last MBConv block and ``top_*``;
ResNet50V2: ``conv5_block3`` and ``post_*``; DenseNet121: ``conv5_block16`` and the
final BN/ReLU; MobileNetV3: ``expanded_conv_14`` and ``conv_1``; ConvNeXt: the last
block of stage 3 and the final LayerNorm). ``tests/test_backbones.py`` checks each
count against the layer named in ``top_block``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from imgkit.models import register_model
from imgkit.models.backbones import (
    BACKBONE_LAYER,
    TRANSFER_MODEL,
    TRANSFER_RECIPE,
    cached_weights_file,
    classifier_head,
    freeze,
    load_weights_file,
    weights_source,
)

ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"

# The two ways these backbones were trained to see pixels. "tf" is
# keras.applications' mode "tf" (ResNetV2, MobileNetV3's own Rescaling); "torch" is
# mode "torch" (DenseNet) and what EfficientNetV2-B* and ConvNeXt apply inside
# themselves: x / 255, minus the ImageNet means, over the ImageNet deviations (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXELS = {
    "tf": {"scale": 1 / 127.5, "offset": -1.0},
    "torch": {
        "scale": 1 / 255,
        "offset": 0.0,
        "mode": "torch",
        "channel_order": "RGB",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    },
}


@dataclass(frozen=True)
class Application:
    """One keras.applications backbone as imgkit registers it.

    Attributes:
        name: the registry name (``--model``, ``--encoder``).
        keras_name: the ``keras.applications`` constructor.
        folder: where Keras downloads its files from, under ``ORIGIN``.
        weights: the no-top ImageNet file name Keras caches (``$KERAS_HOME/models``).
        size: the default input side: what Keras (and the paper) uses.
        pixels: "tf" or "torch" (see ``PIXELS``).
        top_block: the first layer of the top block (what ``fine_tune_last`` counts from).
        fine_tune_last: the default ``--fine-tune-last``: the top block's layers to the end.
        params: parameters at ``size``, 3 channels, 2 classes (checked by the tests).
        title: the network's name in the description.
    """

    name: str
    keras_name: str
    folder: str
    weights: str
    size: int
    pixels: str
    top_block: str
    fine_tune_last: int
    params: int
    title: str


def _effnet(variant: str, size: int, last_block: str, params: int) -> Application:
    return Application(
        f"efficientnetv2-{variant}",
        f"EfficientNetV2{variant.upper()}",
        "efficientnet_v2/",
        f"efficientnetv2-{variant}_notop.h5",
        size,
        "torch",
        f"{last_block}_expand_conv",
        18,
        params,
        f"EfficientNetV2-{variant.upper()}",
    )


APPLICATIONS = {
    a.name: a
    for a in (
        _effnet("b0", 224, "block6h", 6_252_625),
        _effnet("b1", 240, "block6i", 7_264_437),
        _effnet("b2", 260, "block6j", 9_135_967),
        _effnet("b3", 300, "block6l", 13_330_495),
        Application(
            "convnext-tiny", "ConvNeXtTiny", "convnext/", "convnext_tiny_notop.h5", 224,
            "torch", "convnext_tiny_stage_3_block_2_depthwise_conv", 8, 28_020_321,
            "ConvNeXt-Tiny",
        ),
        Application(
            "resnet50v2", "ResNet50V2", "resnet/",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", 224, "tf",
            "conv5_block3_preact_bn", 13, 24_097_793, "ResNet50V2",
        ),
        Application(
            "densenet121", "DenseNet121", "densenet/",
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", 224, "torch",
            "conv5_block16_0_bn", 9, 7_304_257, "DenseNet121",
        ),
        Application(
            "mobilenetv3-large", "MobileNetV3Large", "mobilenet_v3/",
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", 224, "tf",
            "expanded_conv_14_expand", 18, 3_246_465, "MobileNetV3-Large",
        ),
    )
}  # fmt: skip


def imagenet_file(app: Application) -> Path:
    """Keras's cached no-top ImageNet file of ``app``, offline first (the same at every size)."""
    return cached_weights_file(
        app.weights,
        ORIGIN + app.folder,
        f"any copy of Keras's {app.keras_name} no-top file works",
    )


def base_model(app: Application, input_size: tuple[int, int], weights="none"):
    """The keras.applications model of ``app`` (no top, 3 channels, no preprocessing).

    Args:
        app: the table row.
        input_size: (height, width).
        weights: "imagenet" (Keras's cached file, downloaded if possible), "none", or
            the path of a no-top weights file for this network.

    Raises:
        OfflineError: "imagenet" when the file is neither cached nor downloadable.
        BadInputError: a weights file that is missing or made for another network.
    """
    import keras

    source = weights_source(weights, lambda: imagenet_file(app))
    constructor = getattr(keras.applications, app.keras_name)
    extra = {}
    if "include_preprocessing" in inspect.signature(constructor).parameters:
        extra["include_preprocessing"] = False  # imgkit's own layers do it (see the top)
    # Built without weights: they come from the file found above, which keeps Keras
    # from reaching for the network itself. Keras's own name is kept: EfficientNetV2
    # looks its configuration up by it.
    base = constructor(include_top=False, weights=None, input_shape=(*input_size, 3), **extra)
    if source is not None:
        load_weights_file(base, source, app.title, needs=f"{app.title} (no top)")
    return base


def preprocess(inputs, kind: str, channels: int):
    """The first layers: grey copied to RGB, then the backbone's pixel scaling ``kind``."""
    from keras import layers

    x = inputs
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    pixels = PIXELS[kind]
    if kind == "tf":
        return layers.Rescaling(pixels["scale"], pixels["offset"], name="scale")(x)
    # float32 whatever the precision policy: the per-channel normalisation of 0-255
    # inputs would lose digits in float16.
    x = layers.Rescaling(pixels["scale"], pixels["offset"], name="scale", dtype="float32")(x)
    return layers.Normalization(
        mean=list(IMAGENET_MEAN),
        variance=[s * s for s in IMAGENET_STD],
        name="normalize",
        dtype="float32",
    )(x)


def build_classifier(
    app: Application,
    num_classes: int,
    input_size: tuple[int, int],
    channels: int,
    dropout: float,
    weights: str,
    fine_tune_last: int,
    head_units: int,
    l2: float,
):
    """The ``app`` backbone with the mobilenetv2 head (see the registered builders)."""
    import keras

    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    base = base_model(app, input_size, weights)
    backbone = keras.Model(base.input, base.output, name=BACKBONE_LAYER)
    freeze(backbone, int(fine_tune_last))

    inputs = keras.Input(shape=(*input_size, channels), name="pixels")
    x = backbone(preprocess(inputs, app.pixels, channels))
    outputs = classifier_head(x, num_classes, dropout, head_units, l2)
    return keras.Model(inputs, outputs, name=app.name.replace("-", "_") + "_classifier")


def _builder(app: Application):
    """A registry builder for ``app``: its signature carries the defaults the registry reads."""

    def build(
        num_classes: int,
        input_size: tuple[int, int],
        channels: int,
        dropout: float = 0.3,
        weights: str = "imagenet",
        fine_tune_last: int = app.fine_tune_last,
        head_units: int = 256,
        l2: float = 1e-4,
    ):
        return build_classifier(
            app, num_classes, input_size, channels, dropout, weights, fine_tune_last,
            head_units, l2,
        )  # fmt: skip

    build.__name__ = build.__qualname__ = app.name.replace("-", "_")
    build.__doc__ = f"""{app.title} backbone (keras.applications) with the mobilenetv2 head.

    Args:
        num_classes: 2 gives one sigmoid unit (P(classes[1])), more a softmax.
        input_size: (height, width), each at least 32 (default {app.size}).
        channels: 3, or 1 (copied into R, G and B, so ImageNet weights still fit).
        dropout: rate of the dropout before the last layer; 0 removes it.
        weights: "imagenet" (Keras's cached {app.weights}, downloaded if possible),
            "none" (random), or the path of a {app.title} no-top weights file.
        fine_tune_last: backbone layers (from the end) that train; default
            {app.fine_tune_last}, its top block from {app.top_block}; 0 freezes the
            backbone, -1 trains it all. BatchNormalization layers never train.
        head_units: units of the head's hidden Dense layer.
        l2: L2 penalty on the head's Dense kernels.
    """
    return build


def _register(app: Application) -> None:
    scaling = "x/127.5-1" if app.pixels == "tf" else "x/255, ImageNet mean/std"
    register_model(
        app.name,
        task="classification",
        input_size=(app.size, app.size),
        channels=3,
        description=f"ImageNet {app.title} (keras.applications): the mobilenetv2 head "
        f"trained first, then the top block fine-tuned (BN frozen); pixels {scaling} inside",
        pixels=PIXELS[app.pixels],
        recipe=TRANSFER_RECIPE,
        **TRANSFER_MODEL,
        weights_file=lambda _size, app=app: imagenet_file(app),
        params=app.params,
    )(_builder(app))


for _app in APPLICATIONS.values():
    _register(_app)
