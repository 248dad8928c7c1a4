"""Training for segmentation datasets: masks in, a segmentation bundle out.

Called by :func:`imgkit.training.train` when the dataset's task is segmentation; it
shares that module's epoch loop (checkpoints, ``--resume``, early stopping on the val
loss, history and curves) and differs in the data (images and their masks, decoded
once; masks resized by nearest neighbour), the augmentation (image and mask mirrored
together), the loss (``bce``, ``dice`` or ``bce+dice``) and the scores (pixel accuracy,
IoU and Dice per image, averaged). No temperature: a mask is thresholded at 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgkit.dataset import Dataset
from imgkit.errors import BadDatasetError, BadInputError
from imgkit.fileio import atomic_path
from imgkit.masks import batch_scores

LOSSES = ("bce", "dice", "bce+dice")
DEFAULT_LOSS = "bce+dice"
THRESHOLD = 0.5
CLASSES = ["background", "object"]


def check_segmentation_args(args: dict, given: dict) -> None:
    """Fill and check the settings that differ for segmentation (in place)."""
    args["loss"] = given.get("loss") or DEFAULT_LOSS
    if args["loss"] not in LOSSES:
        raise BadInputError(f"--loss must be one of {', '.join(LOSSES)}, got {args['loss']!r}")
    if args["resize"] != "stretch":
        raise BadInputError(
            "segmentation resizes images and masks by stretching (--resize stretch); "
            "masks are written back at each image's own size"
        )
    for key, flag in (("label_smoothing", "--label-smoothing"), ("class_weight", "--class-weight")):
        if given.get(key) not in (None, 0, 0.0, "none"):
            raise BadInputError(f"{flag} is for classification, not segmentation")
    if given.get("calibrate"):
        raise BadInputError("--calibrate is for classification; masks are thresholded at 0.5")
    args["label_smoothing"], args["class_weight"], args["calibrate"] = 0.0, "none", False
    h, w = args["input_size"]
    if h % 32 or w % 32:
        raise BadInputError(
            f"--size {h}x{w}: segmentation inputs must be multiples of 32 (e.g. 128, 224, 256)"
        )


def _check_dataset(ds: Dataset) -> None:
    if "mask" not in ds.manifest.columns:
        raise BadDatasetError(f"{ds.root}: a segmentation dataset without a mask column")
    if "train" not in ds.splits():
        raise BadDatasetError(
            f"{ds.root}: no train split (splits here: {', '.join(ds.splits()) or 'none'})"
        )


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


def train_segmentation(
    ds: Dataset,
    out: Path,
    given: dict,
    state: dict | None,
    *,
    callbacks_extra=None,
    on_epoch=None,
    on_batch=None,
    say=lambda _msg: None,
) -> dict:
    """Train a segmentation model on ``ds`` and write the bundle (see ``training.train``).

    Returns:
        The bundle's imgkit.json content.
    """
    from imgkit import segloss  # noqa: F401  (registers the losses a checkpoint needs)
    from imgkit import training as T
    from imgkit.models import get_spec
    from imgkit.recipe import precision, use_mixed_precision

    _check_dataset(ds)
    if state is None:
        args = T._new_args(given, task="segmentation")
    else:
        args = T._resume_args(state, given, ds, out)
    spec = get_spec(args["model"])
    size = (int(args["input_size"][0]), int(args["input_size"][1]))
    channels = int(args["channels"])
    splits = ds.splits()

    train_x, train_y = _pairs(ds, "train", size, channels, say)
    val = _pairs(ds, "val", size, channels, say) if "val" in splits else None
    monitor = "val_loss" if val is not None else "loss"
    if val is None and state is None:
        say("no val split: early stopping watches the training loss")
    mixed = use_mixed_precision(args["mixed_precision"])
    with precision(mixed):
        net, _trainer, _features, run = T._train_loop(
            ds, out, args, spec, state, "sigmoid", size, channels, 2,
            train_x, train_y, None, val, val[1] if val is not None else None, True, monitor,
            False, callbacks_extra, on_epoch, on_batch, say, task="segmentation",
        )  # fmt: skip
        metrics = {}
        if val is not None:
            metrics["val"] = score_split(net, val[0], val[1], args["batch_size"])
        if "test" in splits:
            test_x, test_y = _pairs(ds, "test", size, channels, say, in_memory=False)
            metrics["test"] = score_split(net, test_x, test_y, args["batch_size"])
        meta = {
            "task": "segmentation",
            "model": args["model"],
            "classes": CLASSES,
            "input_size": [size[0], size[1]],
            "channels": channels,
            "resize": "stretch",
            "pixels": {**spec.pixels, "inside_model": True},
            "polarity": None,
            "output": "sigmoid",
            "threshold": THRESHOLD,
            **T.run_meta(ds, args, splits, run, state, metrics, monitor, mixed),
            "notes": ["segmentation: masks thresholded at 0.5; no temperature calibration"],
        }
        if spec.takes_weights:
            meta["transfer"] = T._transfer_info(net, args, size, False)
        with atomic_path(out / T.MODEL_FILE) as tmp:
            net.save(tmp)
    return T._write_bundle(out, run, meta, title=f"{args['model']} on {ds.root.name}")
