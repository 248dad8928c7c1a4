"""Scoring a trained classifier: predictions in batches, loss, accuracy, log loss, threshold."""

from __future__ import annotations

import numpy as np

from imgkit.data.dataset import Dataset
from imgkit.train.calibration import log_loss, temper
from imgkit.train.recipe import loss_and_metric


def predict_batches(net, x, batch_size: int, dtype=np.float64) -> np.ndarray:
    """``net``'s output for every image of ``x`` (array or memory map), in order."""
    from imgkit.train.epochs import in_order

    if isinstance(x, np.ndarray) and not isinstance(x, np.memmap):
        out = net.predict(x, batch_size=batch_size, verbose=0)
    else:
        out = net.predict(in_order(x, batch_size=batch_size), verbose=0)
    return np.asarray(out, dtype=dtype)


def cached_features(net, x, val, batch_size: int) -> tuple:
    """The pooled backbone features of ``x`` and of ``val``'s images, computed once.

    Args:
        net: a model with a ``features`` layer (:func:`~imgkit.models.backbones.feature_extractor`).
        x: the training images (array or memory map).
        val: ``(images, labels)`` or None.

    Returns:
        (features of x, ``(features, labels)`` of val or None), float32.
    """
    from imgkit.models.backbones import feature_extractor

    extractor = feature_extractor(net)
    features = predict_batches(extractor, x, batch_size, np.float32)
    if val is not None:
        val = (predict_batches(extractor, val[0], batch_size, np.float32), val[1])
    return features, val


def score(net, x, labels, y_true, output: str, smoothing: float, batch_size: int) -> tuple:
    """One prediction pass: loss (as trained: smoothed, with the L2 terms), accuracy, log loss.

    Returns:
        (metrics, probabilities (n, k)).
    """
    raw = predict_batches(net, x, batch_size, np.float64)
    loss_fn, _ = loss_and_metric(output, smoothing)
    penalty = sum(float(np.asarray(v)) for v in net.losses)
    loss = float(np.asarray(loss_fn(y_true, raw.astype(np.float32)))) + penalty
    proba = np.stack([1 - raw[:, 0], raw[:, 0]], axis=1) if output == "sigmoid" else raw
    labels = np.asarray(labels).reshape(-1)
    metrics = {
        "loss": loss,
        "accuracy": float((proba.argmax(axis=1) == labels).mean()) if len(labels) else float("nan"),
        "log_loss": log_loss(proba, labels),
    }
    return metrics, proba


def decision_threshold(
    metric, value, output_kind, probs, val, temperature, metrics, notes
) -> tuple[float, str] | None:
    """``--threshold``'s value and the metric that chose it (None: none set), chosen on
    the (calibrated) val split; :func:`imgkit.bundle.calibration_meta` records them.

    Chosen on the probabilities predict will output (after the temperature), so the
    stored number applies to them as they are. Also records val F1 and balanced
    accuracy at the threshold in ``metrics``.
    """
    from imgkit.train.thresholds import choose_threshold, score_at

    if metric is None and value is None:
        return None
    if output_kind != "sigmoid":
        notes.append("--threshold applies to binary (sigmoid) models only; none set")
        return None
    if value is not None:
        chosen, name = float(value), "fixed"
    elif val is None:
        notes.append(f"no val split: no threshold chosen for {metric}; predict uses 0.5")
        return None
    else:
        p_val = temper(probs["val"], temperature) if temperature is not None else probs["val"]
        if len(np.unique(val[1])) < 2:
            # Whole-patient splits can leave one class out of a small val split.
            notes.append("val split holds one class only: no threshold chosen; predict uses 0.5")
            return None
        chosen, _ = choose_threshold(p_val[:, 1], val[1], metric)
        name = metric
    if val is not None:
        p_val = temper(probs["val"], temperature) if temperature is not None else probs["val"]
        for key, m in (("f1", "f1"), ("balanced_accuracy", "balanced")):
            metrics["val"][f"{key}_at_threshold"] = score_at(p_val[:, 1], val[1], chosen, m)
    return chosen, name


def split_arrays(ds: Dataset, split: str, size, channels: int, resize: str, say):
    if not ds.cache_file(split, size, channels, resize).is_file():
        n = len(ds.rows(split))
        say(
            f"decoding {n} {split} images to {size[0]}x{size[1]}x{channels} "
            "(once; cached in the dataset)"
        )
    return ds.arrays(split, size, channels, resize), ds.labels(split)
