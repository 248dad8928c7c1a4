"""Score a folder of predicted masks against the true ones: per-image IoU, Dice, accuracy.

Predicted masks are matched to the truth by file stem (``segment`` names each mask
after its image). The truth is a segmentation dataset folder (its masks, every split)
or a folder of mask files. No TensorFlow here.

Against a dataset of multi-class masks (dataset.json's ``mask_classes``) the
predictions are read as class values (``segment``'s palette PNGs, or grayscale index
PNGs) and scored by class: each class's IoU and the mean IoU over the classes from
the pixels of all images pooled, with each image's own mean IoU and pixel accuracy.
A true mask's ignored pixels (dataset.json's ``mask_ignore``, stored as 255) are left
out of every score, whatever was predicted there.

A plain folder of multi-class masks (PASCAL VOC's SegmentationClass, say) is scored
the same way given its class table (``eval --mask-classes`` / ``--mask-colors``,
:mod:`imgkit.evaluate.maskread`); without one, a mask that is not binary is refused
rather than thresholded. Masks are read and scored one pair at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imgkit.data.classmasks import MaskClasses
from imgkit.data.dataset import Dataset
from imgkit.data.images import list_images
from imgkit.data.masks import mask_scores, mean_scores, read_mask, resize_mask
from imgkit.errors import BadDatasetError, BadImageError, BadInputError
from imgkit.evaluate.maskread import check_binary, read_predicted_classes
from imgkit.infer.inputs import is_dataset_folder

MASK_METRICS = ("iou", "dice", "pixel_accuracy")
CLASS_METRICS = ("mean_iou", "pixel_accuracy")


@dataclass
class MaskReport:
    """What :func:`evaluate_masks` found.

    Attributes:
        per_image: one row per scored mask: path, truth, split, iou, dice,
            pixel_accuracy, resized (the prediction had another size than the truth).
        summary: n, the mean of each metric, and counts of what was not scored.
        unmatched: predicted masks with no true mask.
        unreadable: (path, reason) of predicted or true masks that could not be read.
    """

    per_image: pd.DataFrame
    summary: dict
    unmatched: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def is_mask_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of images (predicted masks), not a CSV."""
    return Path(path).is_dir() and not is_dataset_folder(path)


def truth_classes(source: str | os.PathLike, table: MaskClasses | None = None) -> list[str]:
    """The class names the true masks are scored by; [] for binary masks.

    A dataset's recorded ``mask_classes``; a plain folder's from ``table`` (eval's
    --mask-classes or --mask-colors). A dataset given a table too must record the same
    names: the file then only says how to read colour predictions.

    Raises:
        BadInputError: a table for a dataset of binary masks, or naming other classes.
    """
    if not is_dataset_folder(source):
        return list(table.names) if table is not None else []
    recorded = Dataset.load(source).mask_classes
    if table is None or list(table.names) == list(recorded):
        return recorded
    if not recorded:
        raise BadInputError(
            f"{source}: a dataset of binary masks; --mask-classes and --mask-colors are for "
            "multi-class masks (leave them out)"
        )
    raise BadInputError(
        f"{source} records the classes {', '.join(recorded)}; the class file names "
        f"{', '.join(table.names)}: give the dataset's own classes, or leave the file out"
    )


def mask_truth(source: str | os.PathLike) -> dict[str, tuple[Path, str]]:
    """The true masks by stem: ``{stem: (mask file, split)}``.

    Args:
        source: a segmentation dataset folder, or a folder of mask files.

    Raises:
        BadDatasetError: a dataset that is not a segmentation dataset.
        BadInputError: not a folder.
    """
    path = Path(source)
    if is_dataset_folder(path):
        ds = Dataset.load(path)
        if ds.task != "segmentation" or "mask" not in ds.manifest.columns:
            raise BadDatasetError(
                f"{path}: a {ds.task} dataset has no masks; give a segmentation dataset "
                "(imgkit prep IMAGES --masks MASKS) or a folder of masks"
            )
        return {
            Path(p).stem: (ds.abspath(m), s)
            for p, m, s in zip(
                ds.manifest["path"], ds.manifest["mask"], ds.manifest["split"], strict=True
            )
            if m
        }
    if path.is_dir():
        files, _ = list_images(path)
        return {Path(f).stem: (Path(f), "") for f in files}
    raise BadInputError(f"{path}: the truth for masks is a segmentation dataset or a masks folder")


def evaluate_masks(
    preds: str | os.PathLike, truth: str | os.PathLike, table: MaskClasses | None = None
) -> MaskReport:
    """Score every predicted mask in ``preds`` that has a true mask.

    A prediction of another size than its truth (a mask written at the model's size,
    say) is resized to the truth's size by nearest neighbour and flagged ``resized``.
    ``table``: the classes of a plain folder of multi-class masks (None: binary, unless
    ``truth`` is a dataset of multi-class masks).

    Raises:
        BadInputError: no pair could be scored, a table the dataset disagrees with, or
            (binary) a mask that is not binary.
    """
    names = truth_classes(truth, table)
    if names:
        return evaluate_class_masks(preds, truth, names, table)
    unmatched, unreadable = [], []
    pairs = _matched(
        preds, truth, read_mask_or_empty, _read_true_mask, _resize_binary, unmatched, unreadable
    )
    rows = [
        {"path": str(f), "truth": str(true_path), "split": split,
         **mask_scores(pred, true), "resized": resized}
        for f, true_path, split, pred, true, resized in pairs
    ]  # fmt: skip
    per_image = pd.DataFrame(rows).sort_values("iou", kind="stable").reset_index(drop=True)
    summary = {
        "predictions": str(preds),
        "truth": str(truth),
        "task": "segmentation",
        "n": len(rows),
        **mean_scores(rows),
        "median_iou": float(np.median(per_image["iou"])),
        "unmatched": len(unmatched),
        "unreadable": len(unreadable),
        "resized": int(per_image["resized"].sum()),
    }
    return MaskReport(per_image, summary, unmatched, unreadable)


def evaluate_class_masks(
    preds: str | os.PathLike,
    truth: str | os.PathLike,
    names: list[str],
    table: MaskClasses | None = None,
) -> MaskReport:
    """Score multi-class predicted masks against the true ones: per-class and mean IoU.

    The truth is a dataset's stored masks, or, with ``table``, a plain folder's masks
    read as ``prep`` reads them; with ``table`` colour predictions are read by its
    colours.

    The summary's ``mean_iou``, ``pixel_accuracy`` and ``per_class_iou`` come from
    every scored pixel at once (a class neither true nor predicted anywhere is None and
    left out of the mean); ``median_iou`` is the median of the images' own mean IoUs;
    ``ignored_pixels`` counts the true masks' ignored pixels, scored nowhere.
    """
    from imgkit.data.classmasks import (
        confusion,
        iou_summary,
        read_class_mask,
        read_index_png,
        resize_index,
    )

    k = len(names)
    total = np.zeros((k, k), dtype=np.int64)

    def read_pred(path) -> np.ndarray:
        """A predicted mask's class values, each checked to be under ``k``."""
        return read_index_png(path, k) if table is None else read_predicted_classes(path, table)

    def read_true(path) -> np.ndarray:
        """A true mask's class values, under ``k`` or the ignore value."""
        if table is None or is_dataset_folder(truth):
            return read_index_png(path, k, ignore=True)  # a dataset's stored masks
        return read_class_mask(path, table)

    unmatched, unreadable = [], []
    pairs = _matched(preds, truth, read_pred, read_true, resize_index, unmatched, unreadable)
    rows = []
    ignored = 0
    for f, true_path, split, pred, true, resized in pairs:
        matrix = confusion(pred, true, k)
        total += matrix
        ignored += int(true.size - matrix.sum())
        own = iou_summary(matrix, names)
        rows.append(
            {"path": str(f), "truth": str(true_path), "split": split,
             "mean_iou": own["mean_iou"], "pixel_accuracy": own["pixel_accuracy"],
             **{f"iou_{n}": v for n, v in own["per_class_iou"].items()}, "resized": resized}
        )  # fmt: skip
    per_image = pd.DataFrame(rows).sort_values("mean_iou", kind="stable").reset_index(drop=True)
    pooled = iou_summary(total, names)
    summary = {
        "predictions": str(preds),
        "truth": str(truth),
        "task": "segmentation",
        "classes": list(names),
        "n": len(rows),
        "mean_iou": pooled["mean_iou"],
        "pixel_accuracy": pooled["pixel_accuracy"],
        # An image all ignored has no IoU of its own (NaN): the median skips it.
        "median_iou": float(per_image["mean_iou"].median()),
        "per_class_iou": pooled["per_class_iou"],
        "ignored_pixels": ignored,
        "unmatched": len(unmatched),
        "unreadable": len(unreadable),
        "resized": int(per_image["resized"].sum()),
    }
    return MaskReport(per_image, summary, unmatched, unreadable)


def _matched(preds, truth, read_pred, read_true, resize, unmatched, unreadable):
    """Yield each predicted mask in ``preds`` with the true mask of the same file name,
    both read, the prediction resized (``resize(pred, shape)``) where its shape differs:
    ``(file, true path, split, pred, true, resized)``, one pair in memory at a time.

    Predictions with no true mask are added to ``unmatched``; (path, reason) of masks
    that cannot be read to ``unreadable``.

    Raises:
        BadInputError: no prediction could be matched and read.
    """
    truths = mask_truth(truth)
    files, _ = list_images(preds)
    scored = 0
    for f in files:
        stem = Path(f).stem
        if stem not in truths:
            unmatched.append(str(f))
            continue
        true_path, split = truths[stem]
        try:
            pred, true = read_pred(f), read_true(true_path)
        except BadImageError as e:
            unreadable.append((e.path, e.reason))
            continue
        resized = pred.shape != true.shape
        scored += 1
        yield (f, true_path, split, resize(pred, true.shape) if resized else pred,
               true, resized)  # fmt: skip
    if scored:
        return
    if unreadable:
        path, reason = unreadable[0]
        raise BadInputError(
            f"no mask pair in {preds} and {truth} could be read ({len(unreadable)} "
            f"unreadable); the first: {path}: {reason}"
        )
    raise BadInputError(
        f"no predicted mask in {preds} matches a true mask in {truth} by file name "
        f"({len(files)} predicted, {len(truths)} true)"
    )


def _read_true_mask(path: str | os.PathLike) -> np.ndarray:
    """A true binary mask's pixels, bool (refused if it holds class values)."""
    check_binary(path)
    return read_mask(path).mask


def _resize_binary(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A binary prediction brought to its truth's shape by nearest neighbour, bool."""
    return resize_mask(pred, shape).astype(bool)


def read_mask_or_empty(path: str | os.PathLike) -> np.ndarray:
    """A predicted mask as bool; one all background or all object is a valid answer too.

    Raises:
        BadInputError: it holds class values, not object/background.
        BadImageError: it cannot be read as a mask.
    """
    check_binary(path)
    try:
        return read_mask(path).mask
    except BadImageError as e:
        # One value everywhere: all background (empty) or all object, both answers.
        full = e.reason.startswith("mask has a single value")
        if not (full or e.reason.startswith("empty mask")):
            raise
        from PIL import Image

        with Image.open(path) as img:
            return np.full((img.height, img.width), full, dtype=bool)
