"""U-Net with a MobileNetV2 encoder: the binary segmentation model of seed 004.

The encoder is ImageNet MobileNetV2 (no top), tapped at five depths; the decoder is
pix2pix upsampling blocks (Conv2DTranspose, BatchNorm, ReLU) of 512, 256, 128 and 64
filters, each joined to the encoder's output of the same resolution, and a last
transposed convolution to one sigmoid channel at the input resolution; for
multi-class masks (``num_classes`` C+1 > 2: the background and C classes) to C+1
softmax channels, one per mask value.

``encoder`` (``imgkit train --encoder NAME``) swaps in another ImageNet backbone of
:mod:`imgkit.models.applications` whose outputs at 1/2 ... 1/32 can be named
(``ENCODER_TAPS``), with its own pixel scaling as the first layers.
"""

from __future__ import annotations

from pathlib import Path

from imgkit.errors import BadInputError
from imgkit.models import Recipe, register_model
from imgkit.models.applications import APPLICATIONS, PIXELS, base_model, imagenet_file, preprocess
from imgkit.models.backbones import (
    BACKBONE_LAYER,
    freeze,
    imagenet_weights_file,
    load_weights_file,
    mobilenetv2_weights_source,
)

# The seed scaled images to [0, 1], but a MobileNetV2 encoder was trained on
# x / 127.5 - 1 (keras.applications.mobilenet_v2.preprocess_input); its ImageNet
# features only mean something on that scale.
_PIXELS = {"scale": 1 / 127.5, "offset": -1.0}

# Encoder outputs at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input (the last is the bottleneck).
SKIP_LAYERS = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
)
BOTTLENECK_LAYER = "block_16_project"
DECODER_FILTERS = (512, 256, 128, 64)

DEFAULT_ENCODER = "mobilenetv2"
# The same five taps for each encoder. "NAME" is that layer's output, "NAME:in" its
# input (the output of an unnamed layer: EfficientNetV2's last block of a stage differs
# by variant, MobileNetV3's activations have no fixed names), None the encoder's own
# output. Each skip is the last, widest tensor at its resolution, as MobileNetV2's
# block_N_expand_relu are; the bottleneck is the last block's output, before any wide
# 1x1 "top" convolution (as MobileNetV2's block_16_project is), which keeps the
# decoder's first layer small. ConvNeXt has no output at 1/2 (its stem strides by 4),
# so it is no U-Net encoder.
_EFFICIENTNETV2_TAPS = (
    "block2a_expand_conv:in",
    "block3a_expand_conv:in",
    "block4a_expand_activation",
    "block6a_expand_activation",
    "top_conv:in",
)
ENCODER_TAPS = {
    DEFAULT_ENCODER: (*SKIP_LAYERS, BOTTLENECK_LAYER),
    "efficientnetv2-b0": _EFFICIENTNETV2_TAPS,
    "efficientnetv2-b1": _EFFICIENTNETV2_TAPS,
    "efficientnetv2-b2": _EFFICIENTNETV2_TAPS,
    "efficientnetv2-b3": _EFFICIENTNETV2_TAPS,
    "resnet50v2": (
        "conv1_conv",
        "conv2_block3_preact_relu",
        "conv3_block4_preact_relu",
        "conv4_block6_preact_relu",
        None,
    ),
    "densenet121": ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu", None),
    "mobilenetv3-large": (
        "expanded_conv_1_depthwise_pad:in",
        "expanded_conv_3_depthwise_pad:in",
        "expanded_conv_6_depthwise_pad:in",
        "expanded_conv_12_depthwise_pad:in",
        "conv_1:in",
    ),
}


def check_encoder(encoder: str) -> str:
    """``encoder`` if the U-Net takes it; BadInputError listing the ones it takes."""
    if encoder not in ENCODER_TAPS:
        raise BadInputError(
            f"unknown U-Net encoder {encoder!r} (available: {', '.join(ENCODER_TAPS)})"
        )
    return encoder


def encoder_weights_file(input_size: tuple[int, int], encoder: str = DEFAULT_ENCODER) -> Path:
    """The ImageNet file ``--weights imagenet`` loads into ``encoder`` at ``input_size``."""
    if check_encoder(encoder) == DEFAULT_ENCODER:
        return imagenet_weights_file(input_size)
    return imagenet_file(APPLICATIONS[encoder])


def encoder_pixels(encoder: str = DEFAULT_ENCODER, **_options) -> dict:
    """How the U-Net with ``encoder`` scales pixels (imgkit.json's ``pixels``)."""
    if check_encoder(encoder) == DEFAULT_ENCODER:
        return dict(_PIXELS)
    return dict(PIXELS[APPLICATIONS[encoder].pixels])


@register_model(
    "unet-mobilenetv2",
    task="segmentation",
    input_size=(224, 224),
    channels=3,
    description="U-Net: ImageNet MobileNetV2 encoder (frozen, BN always frozen) + pix2pix "
    "decoder 512/256/128/64, 1 sigmoid channel (or one softmax channel per class of "
    "multi-class masks); input a multiple of 32",
    pixels=_PIXELS,
    # Measured on the nuclei fixture at 128 px (8 train tiles, 4 held out; README):
    # the seed's lr 1e-5 stays at chance (IoU 0.15 after 25 epochs); 1e-3 constant,
    # batch 8, mirrors, 40 epochs: 0.798, still improving; 150 epochs: 0.837; with
    # cosine decay and batch 4 (twice the steps): 0.843; and with all eight
    # symmetries of the square (standard) as augmentation: 0.862. Otsu: 0.755.
    # So 150 epochs (segmentation learns slower per epoch: few images, many pixels);
    # early stopping ends it sooner on data that learns faster.
    recipe=Recipe(
        batch_size=4, lr=1e-3, schedule="cosine", epochs=150, patience=30, augment="standard"
    ),
    output="auto",  # sigmoid for binary masks, softmax for multi-class ones
    min_size=32,
    weights_file=encoder_weights_file,
    params=6_501_345,
    pixels_for=encoder_pixels,
)
def unet_mobilenetv2(
    num_classes: int,
    input_size: tuple[int, int],
    channels: int,
    weights: str = "imagenet",
    fine_tune_last: int = 0,
    encoder: str = DEFAULT_ENCODER,
):
    """U-Net with a MobileNetV2 (alpha 1.0) encoder, or another named ``encoder``.

    The encoder is a nested model named ``backbone`` (five outputs); its
    BatchNormalization layers never train, even when the rest of it does.

    Args:
        num_classes: 2 (object and background): one sigmoid channel gives P(object);
            more (multi-class masks' values 0..C): one softmax channel per value.
        input_size: (height, width), each a multiple of 32.
        channels: 3 (ImageNet weights are RGB; 1 only with ``weights="none"`` for
            mobilenetv2; the other encoders copy grey into R, G and B).
        weights: "imagenet", "none", or the path of the encoder's no-top weights file.
        fine_tune_last: encoder layers (from the end) that train; 0 (default) freezes
            it, -1 trains it all.
        encoder: a name of ``ENCODER_TAPS``: mobilenetv2 (default), efficientnetv2-b0
            to -b3, resnet50v2, densenet121, mobilenetv3-large.
    """
    import keras
    from keras import layers

    h, w = int(input_size[0]), int(input_size[1])
    if h % 32 or w % 32:
        raise BadInputError(
            f"unet-mobilenetv2 needs an input size that is a multiple of 32, got {h}x{w} "
            "(try --size 224, 128 or 256)"
        )
    base, scaled = _encoder_base(check_encoder(encoder), (h, w), channels, weights)
    taps = [_tap(base, name) for name in ENCODER_TAPS[encoder]]
    encoder_model = keras.Model(base.input, taps, name=BACKBONE_LAYER)
    freeze(encoder_model, int(fine_tune_last))

    inputs = keras.Input(shape=(h, w, channels), name="pixels")
    x = scaled(inputs)
    *skips, x = encoder_model(x)
    for filters, skip in zip(DECODER_FILTERS, reversed(skips), strict=True):
        x = layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"up{filters}"
        )(x)
        # Momentum 0.9, not 0.99: the moving statistics settle within tens of steps,
        # so a decoder trained on a few dozen images predicts with the statistics it
        # trained with (at 0.99, val IoU stayed at 0 for the first epochs on discs).
        x = layers.BatchNormalization(momentum=0.9, name=f"up{filters}_bn")(x)
        x = layers.ReLU(name=f"up{filters}_relu")(x)
        x = layers.Concatenate(name=f"up{filters}_skip")([x, skip])
    # float32 even under mixed precision: probabilities near 0 and 1 need the range.
    binary = int(num_classes) <= 2
    outputs = layers.Conv2DTranspose(
        1 if binary else int(num_classes), 3, strides=2, padding="same",
        activation="sigmoid" if binary else "softmax", dtype="float32", name="mask",
    )(x)  # fmt: skip
    return keras.Model(inputs, outputs, name="unet_" + encoder.replace("-", "_"))


def _encoder_base(encoder: str, input_size: tuple[int, int], channels: int, weights):
    """The encoder's keras.applications model (weights loaded) and ``fn(inputs)``: its
    pixel scaling, the U-Net's first layers."""
    import keras
    from keras import layers

    if encoder != DEFAULT_ENCODER:
        app = APPLICATIONS[encoder]
        return base_model(app, input_size, weights), lambda x: preprocess(x, app.pixels, channels)
    h, w = input_size
    source = mobilenetv2_weights_source(weights, channels, (h, w))
    base = keras.applications.MobileNetV2(
        input_shape=(h, w, channels), include_top=False, weights=None, alpha=1.0
    )
    if source is not None:
        load_weights_file(base, source, what=f"MobileNetV2 at {h}x{w}")
    return base, layers.Rescaling(_PIXELS["scale"], _PIXELS["offset"], name="scale")


def _tap(base, name: str | None):
    """The tensor ``name`` stands for in ``base`` (see ENCODER_TAPS)."""
    if name is None:
        return base.output
    layer, _, side = name.partition(":")
    return base.get_layer(layer).input if side == "in" else base.get_layer(layer).output
