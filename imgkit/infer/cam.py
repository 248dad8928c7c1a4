"""Class activation maps: where in a feature map a classifier found its class.

:func:`find_layer` picks the layer Grad-CAM looks at (the last spatial feature map,
inside nested backbones too); :func:`layer_gradients` runs the model once and returns
that layer's activations and the gradient of the class score with respect to them,
with the backend's own gradient (``tf.GradientTape`` on TensorFlow, ``jax.grad`` on
JAX). The layer is reached by wrapping its ``call`` for the duration of one pass, so
the model is never rebuilt and a layer deep inside a nested ``backbone`` model (or a
backbone inside a backbone) is as easy to reach as a top-level one.

Keras is imported inside the functions: a command's ``--help`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from imgkit.errors import BadBundleError, ImgkitError

# Probabilities are clipped here before their logarithm: the smallest float32 a
# softmax returns for a class it rules out, well above the denormals.
_TINY = 1e-30


def walk_layers(model, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every layer of ``model`` in order, nested models' layers in place of the nested
    model (and the nested model itself after them), as ``(path, layer)``: a layer of a
    nested model named ``backbone`` is ``backbone/block_13_expand_relu``."""
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        if getattr(layer, "layers", None):
            yield from walk_layers(layer, path + "/")
        yield path, layer


def _output_shape(layer) -> tuple | None:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):  # never called, or called twice
        return None


def spatial_layers(model) -> list[tuple[str, tuple]]:
    """``(path, output shape)`` of the layers whose output is a feature map a heatmap can
    come from: 4-D (batch, height, width, channels) with more than one position, at or
    after the first layer with weights (so input scaling and other preprocessing at
    the image's own resolution are never taken for features). Pooling layers are left
    out: the map before a final pooling (VGG16's block5_conv3) is finer and the same
    evidence."""
    found, weighted = [], False
    for path, layer in walk_layers(model):
        weighted = weighted or bool(layer.weights) and not getattr(layer, "layers", None)
        shape = _output_shape(layer)
        if not weighted or shape is None or len(shape) != 4 or getattr(layer, "layers", None):
            continue
        if "Pooling" in type(layer).__name__:
            continue
        if (shape[1] or 0) * (shape[2] or 0) > 1:
            found.append((path, shape))
    return found


def find_layer(model, name: str | None = None, where: str = "the model"):
    """The layer Grad-CAM reads: ``name`` (a layer name, or ``backbone/name`` for a
    nested one), else the last spatial feature map (:func:`spatial_layers`).

    Raises:
        BadBundleError: no such layer, or no spatial layer at all (the message says
            what to use instead).
    """
    layers = dict(walk_layers(model))
    if name is not None:
        hits = [p for p in layers if p == name or p.rsplit("/", 1)[-1] == name]
        if not hits:
            spatial = ", ".join(p for p, _ in spatial_layers(model)[-5:]) or "none"
            raise BadBundleError(
                f"{where}: no layer named {name!r} (the last spatial layers: {spatial})"
            )
        return layers[hits[-1]]
    spatial = spatial_layers(model)
    if not spatial:
        raise BadBundleError(
            f"{where}: the model has no spatial layer (no 4-D feature map after its first "
            "weights) for a class activation map; use --method occlusion, which needs none"
        )
    return layers[spatial[-1][0]]


def class_score(preds, onehot, output: str):
    """The score whose gradient a CAM follows, summed over the batch (keras.ops).

    A logit, not a probability: a probability near 1 has almost no gradient. For a
    sigmoid unit it is the logit of the chosen class (``-logit`` for ``classes[0]``);
    for a softmax, ``log p_c - mean_j log p_j``, which equals the centred logit
    ``z_c - mean_j z_j`` exactly, whatever the softmax did with it; for a multi-label
    head (one sigmoid per label), each chosen label's own logit ``log p - log(1 - p)``.
    """
    from keras import ops

    p = ops.clip(ops.cast(preds, "float32"), _TINY, 1.0)
    if output == "multilabel":
        logit = ops.log(p) - ops.log(ops.clip(1.0 - p, _TINY, 1.0))
        return ops.sum(logit * onehot)
    if output == "sigmoid":
        logit = ops.log(p[:, 0]) - ops.log(ops.clip(1.0 - p[:, 0], _TINY, 1.0))
        return ops.sum(logit * (2.0 * onehot[:, 1] - 1.0))
    logp = ops.log(p)
    centred = logp - ops.mean(logp, axis=1, keepdims=True)
    return ops.sum(centred * onehot)


class _Tap:
    """Wraps ``layer.call`` while active: keeps its output and adds ``delta`` to it (the
    input JAX differentiates by), or has a TensorFlow tape watch it."""

    def __init__(self, layer):
        self.layer = layer
        self.out = None
        self.delta = None
        self.tape = None

    def __enter__(self):
        self.had = "call" in vars(self.layer)
        original = self.layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if self.delta is not None:
                out = out + self.delta
            if self.tape is not None:
                self.tape.watch(out)
            self.out = out
            return out

        self.original = original
        # object.__setattr__: Keras layers track attributes they are given; this one is
        # a passing wrapper, not state.
        object.__setattr__(self.layer, "call", call)
        return self

    def __exit__(self, *exc):
        if self.had:
            object.__setattr__(self.layer, "call", self.original)
        else:
            object.__delattr__(self.layer, "call")


def layer_gradients(model, layer, x: np.ndarray, onehot: np.ndarray, output: str):
    """Run ``model`` on ``x`` once; return ``layer``'s activations and the gradient of
    :func:`class_score` (the classes in ``onehot``) with respect to them, as numpy.

    Raises:
        ImgkitError: the Keras backend has no gradient path here (PyTorch, NumPy).
    """
    import keras

    backend = keras.config.backend()
    x = np.asarray(x, dtype=np.float32)
    onehot = np.asarray(onehot, dtype=np.float32)
    with _Tap(layer) as tap:
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tap.tape = tape
                score = class_score(model(tf.constant(x), training=False), onehot, output)
            grads = tape.gradient(score, tap.out)
            return np.asarray(tap.out), np.asarray(grads)
        if backend == "jax":
            import jax

            model(x, training=False)  # the layer's output shape, for the zero delta
            zeros = jax.numpy.zeros(tap.out.shape, tap.out.dtype)

            def score_of(delta):
                tap.delta = delta
                score = class_score(model(x, training=False), onehot, output)
                return score, tap.out

            grads, activations = jax.grad(score_of, has_aux=True)(zeros)
            return np.asarray(activations), np.asarray(grads)
    raise ImgkitError(
        f"class activation maps need the TensorFlow or JAX backend (KERAS_BACKEND is "
        f"{backend}); use --method occlusion"
    )


def gradcam(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient,
    summed, negative evidence cut. (n, h, w, c) twice -> (n, h, w)."""
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return np.maximum((activations * weights).sum(axis=-1), 0.0)


def layercam(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021): each position's activations weighted by their own
    positive gradient, so a small object in a large map keeps its place."""
    return np.maximum((activations * np.maximum(grads, 0.0)).sum(axis=-1), 0.0)
