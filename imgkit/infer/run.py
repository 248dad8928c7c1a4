"""Inference end to end: what ``predict``, ``tta`` and ``segment`` call.

One pipeline for all three, here or on Ray: the input plan (:func:`plan_inputs`), the
batches run through the bundle's model (:mod:`imgkit.infer.engine`, or the same code in
Ray actors, :mod:`imgkit.infer.ray_batch`), and the one check that something could be
read. :func:`predict_inputs` makes prediction rows of the outputs, :func:`segment_inputs`
masks at each image's own size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import pandas as pd

from imgkit.data.records import Reject
from imgkit.infer.engine import Batch, Runner, local_batches
from imgkit.infer.inputs import Tally
from imgkit.infer.options import InferOptions, Work
from imgkit.infer.plan import plan_inputs
from imgkit.infer.predict import Predictor
from imgkit.infer.segment import Segmented, segmented

Inputs = Iterable[str | os.PathLike]


def run_inputs(
    bundle,
    inputs: Inputs,
    stdin: TextIO | None = None,
    options: InferOptions = InferOptions(),
    work: Work = Work(),
    on_reject: Callable[[Reject], None] | None = None,
) -> Iterator[Batch]:
    """Run ``bundle`` on everything the command line names, in order, one batch at a time.

    Args:
        bundle: a loaded Bundle (classification or segmentation).
        inputs: files, folders, dataset folders or ``-`` (:func:`plan_inputs`).
        stdin: where ``-`` reads paths from.
        options: split, batch size, inversion, calibration, shard, threads, Ray.
        work: TTA views (classification) or the mirror pass (segmentation).
        on_reject: called with a Reject for each input that cannot be read.

    Yields:
        :class:`~imgkit.infer.engine.Batch` es of the model's outputs, with their items.

    Raises:
        BadInputError: not a single image could be read (without a shard, or when the
            shard's inputs could not be).
    """
    tally = Tally(on_reject)
    plan = plan_inputs(bundle, inputs, stdin, options.split, options.shard)
    if options.ray is not None:
        from imgkit.infer.ray_batch import ray_batches

        batches = ray_batches(bundle, plan, options, work, tally)
    else:
        runner = Runner(bundle, options, work)
        local = local_batches(runner.decoder, plan, options.batch_size, options.threads, tally)
        batches = (runner.run(batch) for batch in local)
    for batch in batches:
        tally.read += len(batch.items)
        yield batch
    verb = "segmented" if bundle.task == "segmentation" else "predicted"
    tally.check(verb, options.shard)


def predict_inputs(
    bundle,
    inputs: Inputs,
    stdin: TextIO | None = None,
    options: InferOptions = InferOptions(),
    on_reject: Callable[[Reject], None] | None = None,
    views: int = 1,
    seed: int = 0,
) -> Iterator[pd.DataFrame]:
    """Classify everything the command line names; with ``views`` > 1 each image is the
    mean over that many augmented views (:mod:`imgkit.infer.tta`).

    Args and errors as for :func:`run_inputs`; ``seed`` chooses the views after the
    first two.

    Yields:
        One DataFrame of prediction rows per batch, columns as
        :func:`imgkit.infer.predict.csv_columns`.
    """
    predictor = Predictor(bundle, options.calibrated)
    work = Work(views=views, seed=seed)
    for batch in run_inputs(bundle, inputs, stdin, options, work, on_reject):
        paths = [item.path for item in batch.items]
        yield predictor.rows(paths, batch.arrays)


def segment_inputs(
    bundle,
    inputs: Inputs,
    stdin: TextIO | None = None,
    options: InferOptions = InferOptions(batch_size=16),
    on_reject: Callable[[Reject], None] | None = None,
    tta: bool = False,
) -> Iterator[Segmented]:
    """Segment everything the command line names, in order.

    Args and errors as for :func:`run_inputs`; ``tta`` also runs each image mirrored
    and averages the maps (flipped back).

    Yields:
        One :class:`~imgkit.infer.segment.Segmented` per image that could be read, its
        map at the image's own size (with its true mask from a dataset's split).
    """
    k = len(bundle.classes)
    for batch in run_inputs(bundle, inputs, stdin, options, Work(flip=tta), on_reject):
        for item, model_map, size in zip(batch.items, batch.arrays, batch.sizes, strict=True):
            yield segmented(item, model_map, size, k)
