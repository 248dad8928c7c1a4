"""Batch inference on a Ray cluster: ``predict``, ``tta`` and ``segment --ray``.

The driver takes the input plan (:func:`imgkit.infer.plan.plan_inputs`, rejects
included, as a local run does) and hands the items to Ray Data; an actor pool, where
each actor loads the bundle once, decodes and runs the batches with the local
:class:`~imgkit.infer.engine.Runner`; the results stream back in input order (Ray
Data's ``preserve_order``) and become the same CSV rows or masks a local run writes:
the same decoding, batches of the same size, the same arithmetic. Ray is an engine the
user may already run; imgkit adds no scheduling of its own.

Every node must see the bundle and the images at the same paths (a shared file
system) and have imgkit installed, as for any Ray job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from imgkit.data.records import Reject
from imgkit.errors import BadImageError, ImgkitError
from imgkit.infer.engine import Batch, Runner
from imgkit.infer.inputs import decode_reason
from imgkit.infer.options import InferOptions, RayOptions, Work
from imgkit.infer.plan import Item
from imgkit.infer.segment import is_multiclass

RAY_HINT = 'pip install -e ".[ray]" (or pip install "imgkit[ray]")'


class MissingRayError(ImgkitError):
    """Ray (the ``ray`` extra) is not installed."""


def connect(options: RayOptions) -> None:
    """Start or join Ray once per process, quietly."""
    try:
        import ray
    except ImportError as e:
        raise MissingRayError(f"--ray needs Ray: {RAY_HINT}") from e
    if ray.is_initialized():
        return
    # Ray's own INFO lines (executions started and finished) and its C++ workers'
    # notes are not the user's business on stderr; failures still come through as errors.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address in (None, "local"):
            ray.init(**quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as e:
        raise ImgkitError(f"--ray {address}: cannot join the Ray cluster ({e})") from e
    import ray.data  # configures Ray Data's loggers, which are quietened after it

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False


# --- the actor ------------------------------------------------------------------------


class BatchRunner:
    """One Ray actor: loads the bundle once, then turns batches of items into outputs
    with the local :class:`~imgkit.infer.engine.Runner` (its decoder and model call).

    ``job`` holds ``run`` (the bundle folder), ``task`` and ``trust`` as the driver
    resolved them, ``options`` (:class:`InferOptions`) and ``work`` (:class:`Work`).
    """

    def __init__(self, job: dict):
        from imgkit.infer.runtime import open_bundle

        options = job["options"]
        bundle = open_bundle(job["run"], task=job["task"], trust=job["trust"],
                             runtime=options.runtime)  # fmt: skip
        self.runner = Runner(bundle, options, job["work"])
        # Every batch has the same columns and shapes, even one where no image could be
        # read, so Ray can hand batches on without ragged tensors.
        segment = bundle.task == "segmentation"
        self.out_shape = tuple(bundle.input_size) if segment else (len(bundle.classes),)
        if is_multiclass(bundle):  # a map per class
            self.out_shape += (len(bundle.classes),)

    def __call__(self, batch: dict) -> dict:
        arrays, errors, sizes = [], [], []
        for path, own in zip(batch["path"], batch["own"], strict=True):
            size = (0, 0)
            try:
                array, size = self.runner.decoder(Item(Path(str(path)), own=bool(own)))
                arrays.append(array)
                errors.append("")
            except (BadImageError, OSError) as e:
                errors.append(decode_reason(e))
            sizes.append(size)
        good = np.array([not e for e in errors], dtype=bool)
        full = np.zeros((len(errors), *self.out_shape))
        if arrays:
            full[good] = self.runner.outputs(np.stack(arrays))
        return {"path": batch["path"], "error": np.array(errors), "out": full,
                "size": np.array(sizes, dtype=np.int64)}  # fmt: skip


# --- the driver -----------------------------------------------------------------------


def ray_batches(
    bundle,
    plan: Iterable[Item | Reject],
    options: InferOptions,
    work: Work,
    on_reject: Callable[[Reject], None],
) -> Iterator[Batch]:
    """Run a plan's items through an actor pool; the outputs come back in input order.

    Rejects in the plan, and files the actors cannot decode, go to ``on_reject``.

    Yields:
        A :class:`~imgkit.infer.engine.Batch` of outputs per batch with a readable image.
    """
    where = options.ray or RayOptions()
    connect(where)
    import ray

    items = []
    for entry in plan:
        if isinstance(entry, Item):
            items.append(entry)
        else:
            on_reject(entry)
    if not items:
        return
    job = {"run": str(bundle.path), "task": bundle.task, "trust": bundle.trust,
           "options": options, "work": work}  # fmt: skip
    ds = ray.data.from_items([{"path": str(i.path), "own": i.own} for i in items]).map_batches(
        BatchRunner,
        fn_constructor_kwargs={"job": job},
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=where.workers),
        num_gpus=where.gpus or None,
    )
    done = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        # Rows come back in the order they went out: the next len(batch) items.
        chunk = items[done : done + len(batch["path"])]
        done += len(chunk)
        if [str(item.path) for item in chunk] != [str(p) for p in batch["path"]]:
            raise ImgkitError("Ray returned the batches out of order (preserve_order is off)")
        good = batch["error"] == ""
        for item, error in zip(chunk, batch["error"], strict=True):
            if error:
                on_reject(Reject(str(item.path), str(error)))
        if good.any():
            kept = [item for item, ok in zip(chunk, good, strict=True) if ok]
            sizes = [tuple(int(v) for v in s) for s in batch["size"][good]]
            yield Batch(kept, batch["out"][good], sizes)
