"""U-Net with a MobileNetV2 encoder: the binary segmentation model of seed 004.

The encoder is ImageNet MobileNetV2 (no top), tapped at five depths; the decoder is
pix2pix upsampling blocks (Conv2DTranspose, BatchNorm, ReLU) of 512, 256, 128 and 64
filters, each joined to the encoder's output of the same resolution, and a last
transposed convolution to one sigmoid channel at the input resolution.
"""

from __future__ import annotations

from imgkit.errors import BadInputError
from imgkit.models import register_model
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


@register_model(
    "unet-mobilenetv2",
    task="segmentation",
    input_size=(224, 224),
    channels=3,
    description="U-Net: ImageNet MobileNetV2 encoder (frozen, BN always frozen) + pix2pix "
    "decoder 512/256/128/64, 1 sigmoid channel; input a multiple of 32",
    pixels=_PIXELS,
    batch_size=8,
    output="sigmoid",
    # Measured on 12 real nuclei tiles at 128 px: the seed's 1e-5 stays at chance
    # (IoU 0.15 after 25 epochs); 1e-3 with the encoder frozen reaches 0.63 after 40.
    lr=1e-3,
    patience=10,
    augment="light",
    min_size=32,
    weights_file=imagenet_weights_file,
)
def unet_mobilenetv2(
    num_classes: int,
    input_size: tuple[int, int],
    channels: int,
    weights: str = "imagenet",
    fine_tune_last: int = 0,
):
    """U-Net with a MobileNetV2 (alpha 1.0) encoder.

    The encoder is a nested model named ``backbone`` (five outputs); its
    BatchNormalization layers never train, even when the rest of it does.

    Args:
        num_classes: 2 (object and background); one sigmoid channel gives P(object).
        input_size: (height, width), each a multiple of 32.
        channels: 3 (ImageNet weights are RGB; 1 only with ``weights="none"``).
        weights: "imagenet", "none", or the path of a MobileNetV2 no-top weights file.
        fine_tune_last: encoder layers (from the end) that train; 0 (default) freezes
            it, -1 trains it all.
    """
    import keras
    from keras import layers

    h, w = int(input_size[0]), int(input_size[1])
    if h % 32 or w % 32:
        raise BadInputError(
            f"unet-mobilenetv2 needs an input size that is a multiple of 32, got {h}x{w} "
            "(try --size 224, 128 or 256)"
        )
    source = mobilenetv2_weights_source(weights, channels, (h, w))

    base = keras.applications.MobileNetV2(
        input_shape=(h, w, channels), include_top=False, weights=None, alpha=1.0
    )
    if source is not None:
        load_weights_file(base, source, what=f"MobileNetV2 at {h}x{w}")
    taps = [base.get_layer(name).output for name in (*SKIP_LAYERS, BOTTLENECK_LAYER)]
    encoder = keras.Model(base.input, taps, name=BACKBONE_LAYER)
    freeze(encoder, int(fine_tune_last))

    inputs = keras.Input(shape=(h, w, channels), name="pixels")
    x = layers.Rescaling(_PIXELS["scale"], _PIXELS["offset"], name="scale")(inputs)
    *skips, x = encoder(x)
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
    outputs = layers.Conv2DTranspose(
        1, 3, strides=2, padding="same", activation="sigmoid", dtype="float32", name="mask"
    )(x)
    return keras.Model(inputs, outputs, name="unet_mobilenetv2")
