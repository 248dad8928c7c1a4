"""The training recipe's pieces: targets, loss, class weights, schedule, precision.

Plain helpers used by :mod:`imgkit.train.trainer`; Keras is imported inside them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

CLASS_WEIGHTS = ("none", "balanced")
PRECISIONS = ("auto", "on", "off")


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights: None for "none"; for "balanced", n / (k * n_c).

    Balanced weights make every class contribute the same total weight to the loss as
    if the classes were equally frequent (scikit-learn's rule); the mean weight over
    the training images stays 1, so the learning rate means the same. A class absent
    from ``labels`` gets weight 0.
    """
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"class weight must be one of {', '.join(CLASS_WEIGHTS)}, got {mode!r}")
    if mode == "none":
        return None
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(y) / (present.sum() * counts[present])
    return weights


def sample_weights(labels: np.ndarray, per_class: np.ndarray | None) -> np.ndarray | None:
    """One float32 weight per image from per-class weights (None stays None)."""
    if per_class is None:
        return None
    return per_class[np.asarray(labels).reshape(-1).astype(np.int64)].astype(np.float32)


def targets(labels: np.ndarray, output: str, num_classes: int, smoothing: float) -> np.ndarray:
    """What the loss compares against: class indices shaped for the model's output.

    A sigmoid model takes (n, 1) floats; a softmax one takes the indices, or one-hot
    rows when the labels are smoothed (Keras's sparse cross-entropy has no label
    smoothing, its categorical one does).
    """
    y = np.asarray(labels).reshape(-1)
    if output == "sigmoid":
        return y.astype(np.float32).reshape(-1, 1)
    if smoothing > 0:
        return np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]
    return y.astype(np.int64)


def loss_and_metric(output: str, smoothing: float):
    """The Keras loss and accuracy metric for an output kind and label smoothing."""
    import keras

    if output == "sigmoid":
        return (
            keras.losses.BinaryCrossentropy(label_smoothing=smoothing),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        )
    if smoothing > 0:
        return (
            keras.losses.CategoricalCrossentropy(label_smoothing=smoothing),
            keras.metrics.CategoricalAccuracy(name="accuracy"),
        )
    return (
        keras.losses.SparseCategoricalCrossentropy(),
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
    )


def learning_rate(lr: float, schedule: str, total_steps: int):
    """The optimizer's rate: ``lr`` itself ("constant"), or "cosine" decay to 0.

    The cosine schedule is keyed on the optimizer's step counter, which a checkpoint
    saves, so a resumed run continues the same curve.
    """
    if schedule != "cosine":
        return lr
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))


def compile_model(
    model, output: str, lr: float, schedule: str, total_steps: int, smoothing: float = 0.0
) -> None:
    """Compile with Adam, the :func:`learning_rate`, the loss for ``output`` and accuracy."""
    import keras

    rate = learning_rate(lr, schedule, total_steps)
    loss, metric = loss_and_metric(output, smoothing)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=rate), loss=loss, metrics=[metric])


def gpu_present() -> bool:
    """Whether the Keras backend sees a GPU (device discovery, per backend)."""
    import keras

    backend = keras.config.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install means no usable GPU, not a crash
        return False
    return False


def use_mixed_precision(mode: str) -> bool:
    """Resolve ``--mixed-precision``: on, off, or auto (on only when a GPU is present).

    On a CPU float16 is slower, not faster, so auto leaves it off there.
    """
    if mode not in PRECISIONS:
        raise ValueError(f"mixed precision must be one of {', '.join(PRECISIONS)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and gpu_present())


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Build and train under the mixed_float16 policy when ``mixed``; restore after.

    The policy is process-wide in Keras, so it is put back however the block ends.
    """
    import keras

    previous = keras.mixed_precision.global_policy().name
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
