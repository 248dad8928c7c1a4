"""Parity: how far an exported model's answers are from Keras's, on real images.

The images are the bundle's own val split when its dataset folder is still where
training recorded it (same manifest hash), else the images the user names. What is
compared is what a user would read: class probabilities (before the bundle's
temperature, which both sides share) and labels (after temperature and threshold,
as ``imgkit predict`` chooses them), or for a segmentation bundle the mask
probabilities and the thresholded masks. A multi-label bundle's labels are its
(image, label) decisions, each probability against its label's threshold, and its
accuracy is their micro F1.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgkit.data.classmasks import confusion, iou_summary
from imgkit.data.dataset import Dataset
from imgkit.data.folds import as_trained
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.infer.engine import Decoder, decoded_batches, local_batches
from imgkit.infer.inputs import is_dataset_folder, iter_input_paths
from imgkit.infer.plan import Item, plan_inputs
from imgkit.infer.predict import apply_temperature, prediction_frame, to_probabilities
from imgkit.infer.segment import is_multiclass

DEFAULT_LIMIT = 500
BATCH = 32
MASK_THRESHOLD = 0.5


@dataclass
class CheckImages:
    """The images parity is measured on.

    Attributes:
        arrays: uint8 (n, h, w, c), as the bundle's model takes them.
        truth: class indices (n,), bool masks (n, h, w), or a multi-label bundle's
            0/1 labels (n, classes), when known; else None.
        source: where they came from, in words (recorded in imgkit.json).
    """

    arrays: np.ndarray
    truth: np.ndarray | None
    source: str
    calibration: np.ndarray | None = None


def bundle_dataset(bundle) -> Dataset | None:
    """The dataset folder the bundle was trained on, if it is at hand and unchanged and
    has a val split; else None."""
    info = bundle.meta.get("dataset") or {}
    path = info.get("path")
    if not path or not is_dataset_folder(path):
        return None
    try:
        ds = as_trained(Dataset.load(path), info)  # a fold's run: its fold is val
    except BadDatasetError:
        return None
    if not info.get("hash") or ds.hash != info["hash"] or "val" not in ds.splits():
        return None
    return ds


def check_images(
    bundle, check: Sequence[str | os.PathLike] | None = None, limit: int = DEFAULT_LIMIT
) -> CheckImages:
    """Real images for the parity check: ``check`` when given, else the val split.

    Raises:
        BadInputError: neither is at hand, or no image could be read.
    """
    if check:
        return _named_images(bundle, check, limit)
    ds = bundle_dataset(bundle)
    if ds is None:
        where = (bundle.meta.get("dataset") or {}).get("path") or "unknown"
        raise BadInputError(
            f"{bundle.path}: its dataset ({where}) is not at hand to check the export "
            "on its val split; name real images with --check IMAGES"
        )
    # Evenly spread, not the first rows: a manifest may list a split class by class.
    pick = spread(len(ds.rows("val")), limit)
    n, size, channels = len(pick), tuple(bundle.input_size), bundle.channels
    if bundle.task == "segmentation":
        arrays = np.array(ds.arrays("val", size, channels, "stretch")[pick])
        try:
            truth = np.asarray(ds.mask_arrays("val", size)[pick])[..., 0]
            truth = truth if is_multiclass(bundle) else truth.astype(bool)
        except BadDatasetError:
            truth = None
    else:
        items = [i for i in plan_inputs(bundle, [ds.root], split="val") if isinstance(i, Item)]
        arrays = _first(local_batches(Decoder(bundle), (items[i] for i in pick), BATCH), n)
        try:
            multi = bundle.task == "multilabel"
            truth = (ds.label_matrix("val") > 0 if multi else ds.labels("val"))[pick]
        except BadDatasetError:
            truth = None
    return CheckImages(arrays, truth, f"val split of {ds.root} ({n} images)")


def calibration_images(bundle, limit: int) -> np.ndarray | None:
    """int8's calibration images: up to ``limit`` spread evenly over the train split of
    the bundle's dataset, so that the check (on val) never scores images the activation
    ranges were fitted to; None when that split is not at hand.
    """
    ds = bundle_dataset(bundle)
    if ds is None or "train" not in ds.splits() or limit < 1:
        return None
    if bundle.task == "segmentation":
        train = ds.arrays("train", tuple(bundle.input_size), bundle.channels, "stretch")
        return np.array(train[spread(len(train), limit)])
    items = [i for i in plan_inputs(bundle, [ds.root], split="train") if isinstance(i, Item)]
    if not items:
        return None
    pick = spread(len(items), limit)
    arrays = _first(local_batches(Decoder(bundle), (items[i] for i in pick), BATCH), limit)
    return arrays if len(arrays) else None


def spread(total: int, limit: int) -> np.ndarray:
    """At most ``limit`` row numbers of ``total``, evenly spaced, first and last included."""
    return np.unique(np.linspace(0, total - 1, min(limit, total)).astype(int))


def _first(batches, n: int) -> np.ndarray:
    taken, count = [], 0
    for batch in batches:
        taken.append(np.asarray(batch.arrays)[: n - count])
        count += len(taken[-1])
        if count >= n:
            break
    return np.concatenate(taken) if taken else np.zeros((0,), np.uint8)


def _named_images(bundle, check, limit: int) -> CheckImages:
    # Read as predict and segment read them (a segmenter's images stretched, undrafted).
    items = (Item(p) for p, reject in iter_input_paths(check) if reject is None)
    batches = decoded_batches(itertools.islice(items, limit), Decoder(bundle), BATCH)
    arrays = _first(batches, limit)
    if not len(arrays):
        shown = " ".join(str(c) for c in check)
        raise BadInputError(f"--check {shown}: no image could be read to check the export on")
    return CheckImages(arrays, None, f"{len(arrays)} images from --check")


def outputs(run: Callable[[np.ndarray], np.ndarray], arrays: np.ndarray) -> np.ndarray:
    """A model's raw outputs for all of ``arrays``, in batches."""
    parts = [
        np.asarray(run(np.asarray(arrays[i : i + BATCH], dtype=np.float32)))
        for i in range(0, len(arrays), BATCH)
    ]
    return np.concatenate(parts).astype(np.float64)


def _labels(bundle, raw: np.ndarray) -> np.ndarray:
    """Predicted class indices as ``imgkit predict`` chooses them (temperature, threshold)."""
    classes = bundle.classes
    proba = apply_temperature(raw, bundle.temperature)
    names = prediction_frame([""] * len(proba), proba, classes, bundle.threshold)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in names["label"]], dtype=np.int64)


def _multilabels(bundle, raw: np.ndarray) -> np.ndarray:
    """A multi-label bundle's decisions (n, classes) as ``imgkit predict`` takes them:
    each tempered probability against its label's threshold."""
    from imgkit.train.multilabel_scores import temper

    thresholds = np.asarray(bundle.thresholds, dtype=np.float64)[None, :]
    return temper(raw, bundle.temperature) >= thresholds


def _micro_f1(decided: np.ndarray, reference: np.ndarray) -> float:
    """Micro F1 of multi-label decisions (1.0 when neither side names any label)."""
    tp = np.logical_and(decided, reference).sum()
    wrong = np.logical_xor(decided, reference).sum()
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong else 1.0


def _iou(masks: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of all the masks' pixels at once (1.0 when both are empty)."""
    union = np.logical_or(masks, reference).sum()
    return float(np.logical_and(masks, reference).sum() / union) if union else 1.0


def compare(
    bundle, keras_out: np.ndarray, export_out: np.ndarray, truth: np.ndarray | None = None
) -> dict:
    """Parity figures for one export: the largest absolute difference of probabilities,
    whether every label (every mask pixel) agrees and the share that does, and the
    accuracy (a segmenter's IoU) of both sides against ``truth`` (or, without it,
    against Keras's labels); a multi-class segmenter's pixels are its most probable
    classes and its accuracy their mean IoU."""
    if is_multiclass(bundle):
        # Multi-class masks: each pixel's most probable class; accuracy the mean IoU.
        pk, pe = keras_out, export_out
        lk, le = pk.argmax(-1), pe.argmax(-1)
        compared, unit = "class probabilities", "pixels"
    elif bundle.task == "segmentation":
        pk, pe = keras_out[..., 0], export_out[..., 0]
        threshold = bundle.threshold or MASK_THRESHOLD
        lk, le = pk > threshold, pe > threshold
        compared, unit = "mask probabilities", "pixels"
    else:
        k = len(bundle.classes)
        pk = to_probabilities(keras_out, bundle.output, k)
        pe = to_probabilities(export_out, bundle.output, k)
        decide = _multilabels if bundle.task == "multilabel" else _labels
        lk, le = decide(bundle, pk), decide(bundle, pe)
        compared, unit = "probabilities", "labels"
    reference = lk if truth is None else truth.reshape(lk.shape)
    if unit == "pixels" and compared == "class probabilities":
        k = len(bundle.classes)
        keras, export = (
            iou_summary(confusion(labels, reference, k), bundle.classes)["mean_iou"]
            for labels in (lk, le)
        )
        metric = "mean IoU"
    elif unit == "pixels":
        metric, keras, export = "IoU", _iou(lk, reference), _iou(le, reference)
    elif bundle.task == "multilabel":
        metric = "micro F1"
        keras, export = _micro_f1(lk, reference), _micro_f1(le, reference)
    else:
        metric = "accuracy"
        keras, export = float((lk == reference).mean()), float((le == reference).mean())
    return {
        "compared": compared,
        "max_abs_diff": float(np.abs(pk - pe).max()) if pk.size else 0.0,
        "labels_agree": bool((lk == le).all()),
        f"{unit}_differing": int((lk != le).sum()),
        f"{unit}_agreeing": float((lk == le).mean()) if lk.size else 1.0,
        "accuracy": {
            "metric": metric,
            "against": "Keras's labels" if truth is None else "the true labels",
            "keras": keras,
            "export": export,
        },
    }
