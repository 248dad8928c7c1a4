"""Training for segmentation datasets: masks in, a segmentation bundle out.

Called by :func:`imgkit.train.trainer.train` when the dataset's task is segmentation; it
shares that module's epoch loop (checkpoints, ``--resume``, early stopping on the val
loss, history and curves) and differs in the data (images and their masks, decoded
once; masks resized by nearest neighbour), the augmentation (image and mask mirrored
together), the loss (``bce``, ``dice`` or ``bce+dice``) and the scores (pixel accuracy,
IoU and Dice per image, averaged). No temperature: a mask is thresholded at 0.5.

A dataset of multi-class masks (dataset.json's ``mask_classes``, values 0..C) trains a
softmax U-Net of C+1 channels with cross-entropy + per-class Dice; each pixel's class
is the most probable one, and the scores are the mean IoU over the classes, pixel
accuracy and each class's IoU, all from the split's pooled pixel counts. Ignored pixels
(true value 255, dataset.json's ``mask_ignore``) count in neither the loss nor a score.
"""

from __future__ import annotations

import numpy as np

from imgkit.bundle import calibration_meta
from imgkit.data.classmasks import confusion, iou_summary
from imgkit.data.dataset import Dataset
from imgkit.data.masks import batch_scores

THRESHOLD = 0.5
CLASSES = ["background", "object"]


def _pairs(ds: Dataset, split: str, size, channels: int, say, in_memory: bool = True):
    """(images uint8 (n,h,w,c), masks float32 0/1 (n,h,w,1)) of one split, cached."""
    if not ds.cache_file(split, size, channels, "stretch").is_file():
        say(
            f"decoding {len(ds.rows(split))} {split} images and masks to {size[0]}x{size[1]} "
            "(once; cached in the dataset)"
        )
    x = ds.arrays(split, size, channels, "stretch")
    y = ds.mask_arrays(split, size)
    if in_memory:
        return np.asarray(x), np.asarray(y, dtype=np.float32)
    return x, y


def score_classes(net, x, masks, batch_size: int, names) -> dict:
    """Mean IoU, pixel accuracy and per-class IoU of ``net``'s most probable classes,
    from the pixels of the whole split (multi-class masks)."""
    k = len(names)
    matrix = np.zeros((k, k), dtype=np.int64)
    for start in range(0, len(x), batch_size):
        probs = net.predict_on_batch(np.asarray(x[start : start + batch_size], np.float32))
        pred = np.argmax(np.asarray(probs), axis=-1)
        matrix += confusion(pred, np.asarray(masks[start : start + batch_size])[..., 0], k)
    return iou_summary(matrix, names)


def score_split(net, x, masks, batch_size: int) -> dict:
    """Mean per-image IoU, Dice and pixel accuracy of ``net``'s masks at 0.5."""
    rows = []
    for start in range(0, len(x), batch_size):
        probs = net.predict_on_batch(np.asarray(x[start : start + batch_size], np.float32))
        pred = np.asarray(probs)[..., 0] > THRESHOLD
        rows.append((batch_scores(pred, np.asarray(masks[start : start + batch_size])[..., 0]),
                     len(pred)))  # fmt: skip
    n = sum(k for _, k in rows)
    return {key: float(sum(r[key] * k for r, k in rows) / n) for key in rows[0][0]}


def train_segmentation(run, report) -> dict:
    """Train a segmentation model and write the bundle (see :func:`imgkit.train.trainer.train`).

    Args:
        run: the started run (:class:`imgkit.train.run.Run`), task segmentation.
        report: where progress goes (:class:`imgkit.train.loop.Reporting`).

    Returns:
        The bundle's imgkit.json content.
    """
    from imgkit.models import get_spec
    from imgkit.train import segloss
    from imgkit.train.loop import FitData, fit_run
    from imgkit.train.recipe import precision, use_mixed_precision
    from imgkit.train.run import run_meta, transfer_info, write_bundle

    ds, s, say = run.ds, run.settings, report.say
    spec = get_spec(s.model)
    names = ds.mask_classes  # [] for binary masks
    classes = names or CLASSES

    def score(x, y):
        if names:
            return score_classes(fit.net, x, y, s.batch_size, names)
        return score_split(fit.net, x, y, s.batch_size)

    splits = ds.splits()
    train_x, train_y = _pairs(ds, "train", s.input_size, s.channels, say)
    val = _pairs(ds, "val", s.input_size, s.channels, say) if "val" in splits else None
    data = FitData(train_x, train_y, None, val, True, "val_loss" if val is not None else "loss")
    if val is None and run.state is None:
        say("no val split: early stopping watches the training loss")
    mixed = use_mixed_precision(s.mixed_precision)

    def compile_fn(model, steps):
        segloss.compile_segmentation(model, s.lr, s.loss, s.schedule, s.epochs * steps)

    with precision(mixed):
        with run.strategy_scope():
            fit = fit_run(run.out, s, run.state, data, compile_fn, run.dataset_state, report,
                          len(classes), cache_features=False, segmentation=True)  # fmt: skip
        metrics = {}
        if val is not None:
            metrics["val"] = score(val[0], val[1])
        if "test" in splits:
            test_x, test_y = _pairs(ds, "test", s.input_size, s.channels, say, in_memory=False)
            metrics["test"] = score(test_x, test_y)
        meta = {
            "task": "segmentation",
            "model": s.model,
            "classes": classes,
            "input_size": list(s.input_size),
            "channels": s.channels,
            "resize": "stretch",
            "pixels": {**spec.pixels_with(s.builder_options()), "inside_model": True},
            "polarity": None,
            "output": "softmax" if names else "sigmoid",
            **calibration_meta(threshold=None if names else THRESHOLD),
            **run_meta(run, fit, metrics, data.monitor, mixed),
            "notes": [
                "segmentation: each pixel's most probable class; no temperature calibration"
                if names
                else "segmentation: masks thresholded at 0.5; no temperature calibration"
            ],
        }
        if names:
            meta["mask_colors"] = ds.info.get("mask_colors") or []
            if ds.info.get("mask_ignore") is not None:
                # The true masks' ignored pixels: left out of the loss and the metrics.
                meta["mask_ignore"] = ds.info["mask_ignore"]
        if spec.takes_weights:
            meta["transfer"] = transfer_info(fit.net, s, False)
        return write_bundle(run.out, fit, meta, title=f"{s.model} on {ds.root.name}")
