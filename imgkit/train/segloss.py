"""Segmentation losses and metrics (Keras): BCE, Dice, BCE + Dice; IoU and Dice scores.

Multi-class masks (a softmax output of C+1 channels, the true masks class values
(n, h, w, 1)) take the same --loss names: ``bce`` is then the categorical
cross-entropy, ``dice`` the soft Dice of each class averaged over the classes, and
``bce+dice`` their sum; the metrics are pixel accuracy and the mean IoU of the classes.
A true value of C+1 or more is an ignored pixel (a dataset's ``mask_ignore``, 255): it
adds nothing to the loss (the cross-entropy is the mean over the other pixels, the
Dice counts only them) nor to the metrics.

Registered as Keras serializables, so a checkpoint's compiled model loads back with
its loss when a run is resumed.
"""

from __future__ import annotations

import keras
from keras import ops

from imgkit.train.recipe import learning_rate
from imgkit.train.settings import SEGMENTATION_LOSSES as LOSSES

THRESHOLD = 0.5
_SMOOTH = 1.0


@keras.saving.register_keras_serializable(package="imgkit")
def dice_loss(y_true, y_pred):
    """1 - soft Dice per image (smoothed by 1 pixel, so an empty mask gives no NaN)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    inter = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * inter + _SMOOTH) / (total + _SMOOTH)


@keras.saving.register_keras_serializable(package="imgkit")
def bce_dice_loss(y_true, y_pred):
    """Pixel-mean binary cross-entropy plus Dice loss, per image.

    BCE gives every pixel a gradient from the start; Dice weighs the object as a
    whole, so a small object is not drowned by the background's many easy pixels.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=axes[:-1])
    return bce + dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="imgkit")
class Dice(keras.metrics.Metric):
    """Dice coefficient of the thresholded prediction, pooled over all pixels seen."""

    def __init__(self, threshold: float = THRESHOLD, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)
        self.inter = self.add_variable(shape=(), initializer="zeros", name="inter")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = ops.cast(ops.greater(ops.cast(y_true, "float32"), 0.5), "float32")
        p = ops.cast(ops.greater(ops.cast(y_pred, "float32"), self.threshold), "float32")
        self.inter.assign_add(ops.sum(t * p))
        self.total.assign_add(ops.sum(t) + ops.sum(p))

    def result(self):
        return ops.divide_no_nan(2.0 * self.inter, self.total)

    def reset_state(self):
        self.inter.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def _labelled(y_true, k: int, dtype):
    """(class values (n, h, w) with ignored pixels as 0, weights 1 where a pixel has a
    class and 0 where it is ignored) of true masks ``y_true`` (n, h, w, 1)."""
    values = ops.squeeze(ops.cast(y_true, "int32"), axis=-1)
    labelled = ops.less(values, k)
    return ops.where(labelled, values, ops.zeros_like(values)), ops.cast(labelled, dtype)


@keras.saving.register_keras_serializable(package="imgkit")
def class_dice_loss(y_true, y_pred):
    """1 - soft Dice of each class, averaged over the classes, per image.

    A class neither in the image nor predicted scores 1 (the smoothing), so a rare
    class counts as much as the background once it is there. Ignored pixels count in
    neither the overlap nor the sizes.
    """
    k = y_pred.shape[-1]
    values, weight = _labelled(y_true, k, y_pred.dtype)
    weight = ops.expand_dims(weight, -1)
    t = ops.one_hot(values, k, dtype=y_pred.dtype) * weight
    p = y_pred * weight
    inter = ops.sum(t * p, axis=(1, 2))
    total = ops.sum(t, axis=(1, 2)) + ops.sum(p, axis=(1, 2))
    return 1.0 - ops.mean((2.0 * inter + _SMOOTH) / (total + _SMOOTH), axis=-1)


@keras.saving.register_keras_serializable(package="imgkit")
def class_ce(y_true, y_pred):
    """Categorical cross-entropy per image: the mean over its labelled pixels (true
    masks as class values; an image all ignored scores 0)."""
    values, weight = _labelled(y_true, y_pred.shape[-1], y_pred.dtype)
    ce = keras.losses.sparse_categorical_crossentropy(values, y_pred)
    count = ops.maximum(ops.sum(weight, axis=(1, 2)), 1.0)
    return ops.sum(ce * weight, axis=(1, 2)) / count


@keras.saving.register_keras_serializable(package="imgkit")
def class_ce_dice_loss(y_true, y_pred):
    """Cross-entropy plus per-class Dice loss, per image: every pixel has a gradient,
    and each class weighs as a whole however few pixels it covers."""
    return class_ce(y_true, y_pred) + class_dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="imgkit")
class ClassAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Pixel accuracy of the most probable classes over the labelled pixels (an
    ignored pixel, true value C+1 or more, is not counted)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        values, weight = _labelled(y_true, y_pred.shape[-1], "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        return super().update_state(values, y_pred, sample_weight=weight)


@keras.saving.register_keras_serializable(package="imgkit")
class ClassMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU of the classes over the labelled pixels (ignored pixels not counted)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        values, weight = _labelled(y_true, y_pred.shape[-1], "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        # The confusion matrix counts in the metric's own dtype (int by default).
        return super().update_state(values, y_pred, sample_weight=ops.cast(weight, self.dtype))


def segmentation_loss(name: str, multiclass: bool = False):
    """The Keras loss for ``--loss``: bce, dice or bce+dice (their multi-class forms
    when ``multiclass``)."""
    if multiclass and name in LOSSES:
        return {"bce": class_ce, "dice": class_dice_loss, "bce+dice": class_ce_dice_loss}[name]
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "dice":
        return dice_loss
    if name == "bce+dice":
        return bce_dice_loss
    raise ValueError(f"unknown segmentation loss {name!r} (choose from {', '.join(LOSSES)})")


def compile_segmentation(
    model, lr: float, loss: str, schedule: str = "constant", total_steps: int = 1
) -> None:
    """Compile with Adam at ``lr``, the loss, and pixel accuracy, IoU and Dice metrics.

    ``schedule`` "cosine" decays the rate to 0 over ``total_steps`` (keyed on the
    optimizer's step counter, which checkpoints keep, so a resumed run goes on along
    the same curve). A model of several output channels (multi-class masks) gets the
    multi-class loss, pixel accuracy and mean IoU over the classes, all blind to
    ignored pixels.
    """
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(lr, schedule, total_steps))
    k = int(model.output_shape[-1])
    if k > 1:
        model.compile(
            optimizer=optimizer,
            loss=segmentation_loss(loss, multiclass=True),
            metrics=[
                ClassAccuracy(name="accuracy"),
                ClassMeanIoU(num_classes=k, sparse_y_true=True, sparse_y_pred=False, name="iou"),
            ],
        )
        return
    model.compile(
        optimizer=optimizer,
        loss=segmentation_loss(loss),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=THRESHOLD),
            keras.metrics.BinaryIoU(target_class_ids=[1], threshold=THRESHOLD, name="iou"),
            Dice(),
        ],
    )
