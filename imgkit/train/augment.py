"""Training-time augmentation as Keras preprocessing layers inside the model.

The layers act only when the model is called with ``training=True`` (in ``fit``);
at inference they pass images through unchanged, so a bundle's model predicts the
same with or without them and predict needs to know nothing about augmentation.
They work on raw 0-255 pixels, before the model's own scaling.
"""

from __future__ import annotations

from imgkit.models import AUGMENT_LEVELS as LEVELS

# "shift"'s largest shift, a fraction of the side: the usual pad-2-and-crop on 28x28.
SHIFT = 2 / 28


def augmentation_layers(level: str, seed: int = 0) -> list:
    """The preprocessing layers for an augmentation ``level``.

    - none: no layers.
    - flip: horizontal flips only, exact copies mirrored (the cheapest regularizer;
      a mirrored garment is still a real-looking one).
    - shift: horizontal flips and whole-pixel shifts of up to 7% of the side (2 pixels
      at 28x28), edges repeated: nothing is interpolated, so a tiny image keeps
      its sharpness.
    - light: horizontal flips, small shifts (5%) and rotations (about 7 degrees).
    - standard: seed 001's ImageDataGenerator set: rotations (up to about 20
      degrees), shifts (10%), brightness (+-20% of the range), zoom (15%) and
      horizontal flips.

    Args:
        level: one of :data:`LEVELS`.
        seed: seeds the layers (each its own), so runs are repeatable.
    """
    if level not in LEVELS:
        raise ValueError(f"augment must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == "none":
        return []
    from keras import layers

    # flip, shift and light start alike: the flip first, on the level's own seed.
    flip = layers.RandomFlip("horizontal", seed=seed, name="aug_flip")
    if level == "flip":
        return [flip]
    if level == "shift":
        return [
            flip,
            layers.RandomTranslation(
                SHIFT, SHIFT, fill_mode="nearest", interpolation="nearest",
                seed=seed + 1, name="aug_shift",
            ),
        ]  # fmt: skip
    if level == "light":
        return [
            flip,
            layers.RandomTranslation(0.05, 0.05, seed=seed + 1, name="aug_shift"),
            layers.RandomRotation(0.02, seed=seed + 2, name="aug_rotate"),
        ]
    return [
        layers.RandomRotation(0.055, seed=seed, name="aug_rotate"),
        layers.RandomTranslation(0.1, 0.1, seed=seed + 1, name="aug_shift"),
        layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 2, name="aug_brightness"),
        layers.RandomZoom(0.15, seed=seed + 3, name="aug_zoom"),
        layers.RandomFlip("horizontal", seed=seed + 4, name="aug_flip"),
    ]


def with_augmentation(model, level: str, seed: int = 0):
    """``model`` behind the augmentation layers of ``level`` (``model`` itself for none).

    The result is a functional model: input, the augmentation layers, then ``model``
    as one nested layer, so the model's own structure (a backbone, a features layer)
    stays as it was.
    """
    aug = augmentation_layers(level, seed)
    if not aug:
        return model
    import keras

    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="pixels")
    x = inputs
    for layer in aug:
        x = layer(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_augmented")
