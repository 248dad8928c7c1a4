"""From planned items to model outputs: decoding, batching and one model call per batch.

:class:`Decoder` reads one image as the bundle's model wants it, and :class:`Runner`
turns a batch into outputs (calibrated class probabilities, averaged TTA views, or
mask maps); both are the same objects in this process and in each Ray actor
(:mod:`imgkit.infer.ray_batch`), so the two paths cannot drift apart.
:func:`local_batches` feeds a plan through them here: a small thread pool decodes the
next batch while the model runs on the current one, and a dataset split whose decode
cache already holds the bundle's preprocessing is read from it. Nothing holds more
than two batches of pixels at a time, however many images there are.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from imgkit.data.records import Reject
from imgkit.errors import BadImageError
from imgkit.infer.inputs import decode_reason
from imgkit.infer.inversion import should_invert
from imgkit.infer.options import INVERT_MODES, InferOptions, Work
from imgkit.infer.plan import Item, Source
from imgkit.infer.predict import Predictor
from imgkit.infer.segment import flip_tta
from imgkit.infer.tta import tta_proba

# An image's own size where it is not known (a cached split: classification needs none).
NO_SIZE = (0, 0)


@dataclass
class Batch:
    """Items in input order with one array row each: the model's input (uint8 images)
    or, once run, its output; ``sizes`` are the images' own (width, height)."""

    items: list[Item]
    arrays: np.ndarray
    sizes: list[tuple[int, int]]


class Decoder:
    """Reads one image file as a bundle's model takes it.

    A classifier's images get the bundle's size, channels and resize mode, and are
    inverted as ``invert`` says (never, in "auto", an image of the bundle's own training
    dataset: it is what the model learned from). A segmenter's are stretched to the
    input size, never inverted, and keep their own size, to which the mask returns.
    """

    def __init__(self, bundle, invert: str = "auto"):
        if invert not in INVERT_MODES:
            raise ValueError(f"invert must be one of {INVERT_MODES} (got {invert!r})")
        self.segment = bundle.task == "segmentation"
        self.size = tuple(bundle.input_size)
        self.channels = bundle.channels
        self.resize = "stretch" if self.segment else bundle.resize
        self.invert = "never" if self.segment else invert
        self.polarity = bundle.polarity

    def adjust(self, array: np.ndarray, item: Item) -> np.ndarray:
        """``array`` (the item's decoded image), inverted when it should be."""
        mode = "never" if self.invert == "auto" and item.own else self.invert
        return 255 - array if should_invert(array, self.polarity, mode) else array

    def __call__(self, item: Item) -> tuple[np.ndarray, tuple[int, int]]:
        """The item's uint8 (h, w, c) array and the image's own (width, height).

        Raises:
            BadImageError, OSError: the file cannot be used.
        """
        from imgkit.data.images import load_array, open_image, to_array

        if self.segment:
            with open_image(item.path) as img:
                return to_array(img, self.size, self.channels, self.resize), img.size
        array = load_array(item.path, self.size, self.channels, self.resize)
        return self.adjust(array, item), NO_SIZE

    def cached(self, source: Source, own: bool, threads: int | None = None):
        """The source split's decoded images when its cache holds this preprocessing (or
        it is the bundle's own dataset, whose cache training made), else None.

        A foreign dataset is streamed like any other images, so predicting on one never
        writes a large cache as a side effect."""
        ds, shape = source.dataset, (self.size, self.channels, self.resize)
        if self.segment or not (own or ds.cache_file(source.split, *shape).is_file()):
            return None
        return ds.arrays(source.split, *shape, workers=threads)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def decoded_batches(
    items: Iterable[Item],
    decode: Callable[[Item], tuple[np.ndarray, tuple[int, int]]],
    batch_size: int,
    threads: int | None = None,
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[Batch]:
    """Decode items in a thread pool, one batch ahead of the consumer.

    At most two batches are in flight: the one being yielded and the next one
    decoding, so memory stays flat and items are taken from ``items`` only as needed.
    A file that cannot be decoded (BadImageError, OSError) goes to ``on_reject``.

    Yields:
        A :class:`Batch` for each batch with at least one good image.
    """
    threads = threads or max(1, min(4, os.cpu_count() or 1))

    def collect(chunk: list[Item], futures: list[Future]) -> Batch | None:
        good, arrays, sizes = [], [], []
        for item, fut in zip(chunk, futures, strict=True):
            try:
                array, size = fut.result()
            except (BadImageError, OSError) as e:
                if on_reject:
                    on_reject(Reject(str(item.path), decode_reason(e)))
                continue
            good.append(item)
            arrays.append(array)
            sizes.append(size)
        return Batch(good, np.stack(arrays), sizes) if good else None

    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for chunk in _chunks(items, batch_size):
            pending.append((chunk, [pool.submit(decode, item) for item in chunk]))
            # Hand out batch k only once batch k+1 is decoding behind it.
            if len(pending) > 1 and (batch := collect(*pending.popleft())):
                yield batch
        while pending:
            if batch := collect(*pending.popleft()):
                yield batch


def local_batches(
    decoder: Decoder,
    plan: Iterable[Item | Reject],
    batch_size: int,
    threads: int | None = None,
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[Batch]:
    """A plan's items decoded in this process, as batches in input order.

    Runs of items from a cached dataset split are read from its cache; everything else
    forms one stream through :func:`decoded_batches`, so batches fill up across inputs.
    Rejects in the plan go to ``on_reject``.
    """
    # id(source) -> (source, its cached images or None); holding the source keeps its id
    # from being reused by a later one.
    caches: dict[int, tuple[Source, np.ndarray | None]] = {}

    def cache_of(entry) -> int | None:
        if not isinstance(entry, Item) or entry.source is None:
            return None
        key = id(entry.source)
        if key not in caches:
            caches[key] = (entry.source, decoder.cached(entry.source, entry.own, threads))
        return key if caches[key][1] is not None else None

    for key, run in itertools.groupby(plan, key=cache_of):
        if key is None:
            items = _accepted(run, on_reject)
            yield from decoded_batches(items, decoder, batch_size, threads, on_reject)
            continue
        for chunk in _chunks(run, batch_size):
            arrays = np.array(caches[key][1][[item.row for item in chunk]])
            for i, item in enumerate(chunk):
                arrays[i] = decoder.adjust(arrays[i], item)
            yield Batch(chunk, arrays, [NO_SIZE] * len(chunk))


def _accepted(entries: Iterable[Item | Reject], on_reject) -> Iterator[Item]:
    for entry in entries:
        if isinstance(entry, Item):
            yield entry
        elif on_reject:
            on_reject(entry)


class Runner:
    """A bundle's model applied to decoded batches as ``work`` says: classification
    probabilities (calibrated as ``options`` says; averaged over TTA views) or a
    segmenter's P(object) maps (mirror-averaged with ``work.flip``)."""

    def __init__(self, bundle, options: InferOptions, work: Work = Work()):
        self.bundle = bundle
        self.work = work
        self.decoder = Decoder(bundle, options.invert)
        self.segment = bundle.task == "segmentation"
        self.predictor = None if self.segment else Predictor(bundle, options.calibrated)

    def outputs(self, arrays: np.ndarray) -> np.ndarray:
        """(n, k) probabilities, or (n, h, w) maps at the model's input size ((n, h, w,
        k) for a multi-class segmenter)."""
        if self.segment:
            model = self.bundle.model

            def predict(x):
                return np.asarray(model.predict_on_batch(np.asarray(x, dtype=np.float32)))

            maps = flip_tta(predict, arrays) if self.work.flip else predict(arrays)
            # One channel: P(object) maps (n, h, w); several: per-class maps (n, h, w, k).
            return maps[..., 0] if maps.shape[-1] == 1 else maps
        if self.work.views > 1:
            return tta_proba(self.predictor, arrays, self.work.views, self.work.seed)
        return self.predictor.proba(arrays)

    def run(self, batch: Batch) -> Batch:
        """The batch with its images replaced by the model's outputs."""
        return Batch(batch.items, self.outputs(batch.arrays), batch.sizes)
