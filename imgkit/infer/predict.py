"""Classify images with a model bundle, streamed in batches in constant memory.

Inputs become a lazy stream of paths (:func:`iter_input_paths`); a small thread pool
decodes the next batch while the model runs on the current one
(:func:`decoded_batches`). :func:`input_batches` is that pipeline for everything a
command line names, shared by ``predict`` and ``tta``; each batch becomes a DataFrame
whose columns are ``path,label,confidence,p_<class>...`` in the bundle's class order
(:func:`prediction_frame`). Nothing here holds more than two batches of pixels at a
time, however many images there are."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from imgkit.data.dataset import Dataset, Reject
from imgkit.errors import BadBundleError
from imgkit.infer.inputs import (
    RejectCounter,
    decoded_batches,
    is_dataset_folder,
    iter_input_paths,
    shard_slices,
)
from imgkit.infer.inversion import INVERT_MODES, should_invert

# CSV number format: 6 significant digits keep tiny probabilities (which log loss
# needs) without writing 17 digits per value.
FLOAT_FORMAT = "%.6g"

# --- probabilities and rows (shared with tta) -----------------------------------------


def csv_columns(classes: Sequence[str]) -> list[str]:
    """The predictions CSV header for these classes."""
    return ["path", "label", "confidence", *[f"p_{c}" for c in classes]]


def to_probabilities(outputs: np.ndarray, output: str, num_classes: int) -> np.ndarray:
    """Turn raw model outputs into an (n, num_classes) probability array.

    Args:
        outputs: what the model returned for a batch.
        output: "softmax" (one column per class) or "sigmoid" (one unit, the
            probability of ``classes[1]``).
        num_classes: how many classes the bundle names.

    Raises:
        BadBundleError: the outputs do not fit the bundle's classes.
    """
    out = np.asarray(outputs, dtype=np.float64)
    out = out.reshape(len(out), -1)
    if output == "sigmoid":
        if out.shape[1] != 1 or num_classes != 2:
            raise BadBundleError(
                f"a sigmoid bundle needs one output unit and two classes "
                f"(got {out.shape[1]} outputs, {num_classes} classes)"
            )
        p = out[:, 0]
        return np.stack([1.0 - p, p], axis=1)
    if out.shape[1] != num_classes:
        raise BadBundleError(
            f"the model has {out.shape[1]} outputs but the bundle names {num_classes} classes"
        )
    return out


def apply_temperature(proba: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Soften (T > 1) or sharpen (T < 1) probabilities: softmax(log(p) / T).

    Log-probabilities differ from the logits only by a per-row constant, which the
    softmax removes, so dividing them by T is the same as dividing the logits. The
    arithmetic is :func:`imgkit.train.calibration.temper`, the function that fitted T.
    """
    from imgkit.train.calibration import temper

    proba = np.asarray(proba, dtype=np.float64)
    if temperature <= 0:
        raise BadBundleError(f"temperature must be positive (got {temperature})")
    return temper(proba, temperature)


def prediction_frame(
    paths: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
    threshold: float | None = None,
) -> pd.DataFrame:
    """One predictions-CSV row per image: path, chosen label, its probability, all of them.

    The label is the most probable class, or, for two classes with a ``threshold``
    (a binary bundle's decision threshold), ``classes[1]`` when its probability reaches
    the threshold; the confidence is always the chosen label's probability.
    """
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.argmax(axis=1)
    if threshold is not None and proba.shape[1] == 2:
        top = (proba[:, 1] >= float(threshold)).astype(int)
    df = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    df.insert(0, "confidence", proba[np.arange(len(top)), top])
    df.insert(0, "label", [classes[i] for i in top])
    df.insert(0, "path", [str(p) for p in paths])
    return df


def frame_to_csv(df: pd.DataFrame, header: bool) -> str:
    """Format prediction rows as CSV text (the one format every writer uses)."""
    return df.to_csv(index=False, header=header, float_format=FLOAT_FORMAT, lineterminator="\n")


# --- the pipeline ---------------------------------------------------------------------


class Predictor:
    """A bundle's model with its output handling: arrays in, probabilities out."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.classes = list(bundle.classes)
        self.output = bundle.meta.get("output", "softmax")
        self.temperature = float(bundle.meta.get("temperature") or 1.0)
        # A binary bundle's decision threshold on P(classes[1]) (imgkit.train.thresholds).
        threshold = bundle.meta.get("threshold")
        self.threshold = float(threshold) if threshold is not None else None
        if self.output not in ("softmax", "sigmoid"):
            raise BadBundleError(f"{bundle.path}: unknown output {self.output!r} in the bundle")

    def raw_proba(self, arrays: np.ndarray) -> np.ndarray:
        """The model's probabilities (n, k), before the bundle's temperature.

        One forward pass for the whole array, however many images it holds.
        """
        x = np.asarray(arrays, dtype=np.float32)
        raw = self.bundle.model.predict_on_batch(x)
        return to_probabilities(np.asarray(raw), self.output, len(self.classes))

    def proba(self, arrays: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, k) for a batch of uint8 images in the bundle's format."""
        return apply_temperature(self.raw_proba(arrays), self.temperature)

    def frame(self, paths: Sequence, arrays: np.ndarray) -> pd.DataFrame:
        return prediction_frame(paths, self.proba(arrays), self.classes, self.threshold)


def image_loader(bundle, invert: str = "auto") -> Callable[[Path], np.ndarray]:
    """A function that reads one image file as the bundle expects it (size, channels,
    resize, and inverted when ``invert`` says so)."""
    from imgkit.data.images import load_array

    if invert not in INVERT_MODES:
        raise ValueError(f"invert must be one of {INVERT_MODES} (got {invert!r})")
    size = tuple(bundle.input_size)
    channels, resize, polarity = bundle.channels, bundle.resize, bundle.polarity

    def load(path: Path) -> np.ndarray:
        a = load_array(path, size, channels, resize)
        return 255 - a if should_invert(a, polarity, invert) else a

    return load


def path_batches(
    bundle,
    paths: Iterable[str | os.PathLike],
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Image files as the bundle's model expects them, one ``(paths, arrays)`` batch at a time.

    Any image (size, mode, EXIF orientation) is converted to the bundle's input size,
    channels and resize mode; files that cannot be read are passed to ``on_reject``
    and skipped. Arrays are uint8 (n, h, w, c).
    """
    load = image_loader(bundle, invert)
    yield from decoded_batches(paths, load, batch_size, workers, on_reject)


def predict_paths(
    bundle,
    paths: Iterable[str | os.PathLike],
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Classify image files, one DataFrame of prediction rows per batch.

    Args:
        bundle: a loaded classification Bundle.
        paths: image paths, consumed lazily.
        batch_size: images per model call.
        invert: "auto" (by the bundle's polarity), "always" or "never".
        on_reject: called with a Reject for each unreadable file.
        workers: decoding threads.

    Yields:
        DataFrames with columns :func:`csv_columns` (``bundle.classes``).
    """
    predictor = Predictor(bundle)
    for good, arrays in path_batches(bundle, paths, batch_size, invert, on_reject, workers):
        yield predictor.frame(good, arrays)


def _trained_on(bundle, dataset: Dataset) -> bool:
    info = bundle.meta.get("dataset") or {}
    return bool(info.get("hash")) and info.get("hash") == dataset.hash


def default_split(dataset: Dataset, split: str | None) -> str:
    """``split``, or for None "test" ("unlabeled" for a dataset that has no test split:
    a Kaggle test archive prepped on its own)."""
    if split is not None:
        return split
    present = dataset.splits()
    return "unlabeled" if "test" not in present and "unlabeled" in present else "test"


def split_batches(
    bundle,
    dataset: Dataset,
    split: str | None = None,
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
    rows: tuple[int, int | None] = (0, None),
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """One split of a dataset folder as ``(paths, arrays)`` batches; see :func:`predict_split`.

    ``split=None`` means :func:`default_split`; ``rows`` is the ``[start, stop)`` part of
    the split to read (a shard's).
    """
    split = default_split(dataset, split)
    first, last = rows
    rels = list(dataset.rows(split)["path"])
    last = len(rels) if last is None else last
    paths = [dataset.abspath(r) for r in rels[first:last]]
    size = tuple(bundle.input_size)
    own = _trained_on(bundle, dataset)
    cached = dataset.cache_file(split, size, bundle.channels, bundle.resize).is_file()
    if not (cached or own):
        yield from path_batches(bundle, paths, batch_size, invert, on_reject, workers)
        return
    arrays = dataset.arrays(split, size, bundle.channels, bundle.resize, workers=workers)
    arrays = arrays[first:last]
    auto_invert = invert == "auto" and not own
    for start in range(0, len(paths), batch_size):
        batch = np.array(arrays[start : start + batch_size])
        if invert == "always" or auto_invert:
            for i in range(len(batch)):
                if should_invert(batch[i], bundle.polarity, invert):
                    batch[i] = 255 - batch[i]
        yield paths[start : start + batch_size], batch


def predict_split(
    bundle,
    dataset: Dataset,
    split: str | None = None,
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Classify one split of a dataset folder, one DataFrame per batch.

    Paths are written as the dataset folder joined with each manifest path, so
    ``imgkit eval --truth DATASET`` finds them. The dataset's decoded-image cache is
    used when it already holds the bundle's preprocessing, or when this is the
    dataset the bundle was trained on (training makes the same cache); otherwise the
    files are streamed like any other images, so predicting on a large foreign
    dataset never writes a large cache as a side effect.

    Args:
        bundle: a loaded classification Bundle.
        dataset: the dataset.
        split: which split (train, val, test, unlabeled).
        batch_size: images per model call.
        invert: as for :func:`predict_paths`; in "auto", images of the bundle's own
            training dataset are never inverted (they are what it learned from).
        on_reject: called with a Reject for each unreadable file (streaming only).
        workers: decoding threads.
    """
    predictor = Predictor(bundle)
    batches = split_batches(bundle, dataset, split, batch_size, invert, on_reject, workers)
    for paths, arrays in batches:
        yield predictor.frame(paths, arrays)


def input_batches(
    bundle,
    inputs: Sequence[str | os.PathLike],
    stdin: TextIO | None = None,
    split: str | None = None,
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Everything the user named on the command line as ``(paths, arrays)`` batches, in order.

    Dataset folders give their ``split`` (:func:`split_batches`); runs of other inputs
    (folders, files, ``-``) form one stream of paths (:func:`iter_input_paths`,
    :func:`path_batches`), so batches fill up across them. This is the pipeline
    ``predict`` and ``tta`` share: they differ only in what they do with a batch.
    ``shard=(i, n)`` keeps the i-th of n contiguous slices of all the inputs in order
    (:func:`imgkit.infer.inputs.shard_bounds`); the paths are listed first to count them.

    Raises:
        ImgkitError: when not a single image could be read (without a shard, or when
            the whole input is empty).
    """
    reject = RejectCounter(on_reject)
    read = 0
    parts = _shard_parts if shard is not None else _stream_parts
    for batches in parts(bundle, inputs, stdin, split, batch_size, invert, reject, workers, shard):
        for paths, arrays in batches:
            read += len(paths)
            yield paths, arrays
    if not read and (shard is None or reject.count):
        raise reject.nothing_read()


def _accepted(entries, reject: Callable[[Reject], None]) -> Iterator[Path]:
    """The paths of ``(path, reject)`` entries; the rejects go to ``reject``."""
    for path, r in entries:
        if r is not None:
            reject(r)
        else:
            yield path


def _stream_parts(bundle, inputs, stdin, split, batch_size, invert, reject, workers, _shard):
    """The inputs as runs of batches, read lazily: dataset folders one after another,
    other inputs (folders, files, ``-``) as one stream each run."""
    for is_dataset, group in itertools.groupby(
        inputs, key=lambda i: str(i) != "-" and is_dataset_folder(i)
    ):
        if is_dataset:
            for d in group:
                yield split_batches(
                    bundle, Dataset.load(d), split, batch_size, invert, reject, workers
                )
        else:
            paths = _accepted(iter_input_paths(list(group), stdin), reject)
            yield path_batches(bundle, paths, batch_size, invert, reject, workers)


def _shard_parts(bundle, inputs, stdin, split, batch_size, invert, reject, workers, shard):
    """Like :func:`_stream_parts`, for one shard: every input is listed (and counted)
    first, then each part gives the piece of the shard's range that falls in it."""
    # (dataset, its split's row count) or (None, listed entries) per part, in order.
    parts: list[tuple[Dataset | None, int | list]] = []
    for is_dataset, group in itertools.groupby(
        inputs, key=lambda i: str(i) != "-" and is_dataset_folder(i)
    ):
        if is_dataset:
            for d in group:
                ds = Dataset.load(d)
                parts.append((ds, len(ds.rows(default_split(ds, split)))))
        else:
            parts.append((None, list(iter_input_paths(list(group), stdin))))
    lengths = (n if ds is not None else len(n) for ds, n in parts)
    for (ds, entries), (start, stop) in zip(parts, shard_slices(lengths, shard), strict=True):
        if start == stop:
            continue
        if ds is not None:
            rows = (start, stop)
            yield split_batches(bundle, ds, split, batch_size, invert, reject, workers, rows)
        else:
            paths = _accepted(entries[start:stop], reject)
            yield path_batches(bundle, paths, batch_size, invert, reject, workers)


def predict_inputs(
    bundle,
    inputs: Sequence[str | os.PathLike],
    stdin: TextIO | None = None,
    split: str | None = None,
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Classify everything the user named on the command line, in order.

    Args and errors as for :func:`input_batches`.

    Yields:
        One DataFrame of prediction rows per batch.
    """
    predictor = Predictor(bundle)
    batches = input_batches(
        bundle, inputs, stdin, split, batch_size, invert, on_reject, workers, shard
    )
    for paths, arrays in batches:
        yield predictor.frame(paths, arrays)
