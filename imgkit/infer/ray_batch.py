"""Batch inference on a Ray cluster: ``predict``, ``tta`` and ``segment --ray``.

The driver lists the inputs (as the local commands do, rejects included) and hands the
paths to Ray Data; an actor pool, where each actor loads the bundle once, decodes and
runs the batches; the results stream back in input order (Ray Data's
``preserve_order``) and become the same CSV rows or masks a local run writes: the
same decoding, batches of the same size, the same arithmetic. Ray is an engine the
user may already run; imgkit adds no scheduling of its own.

Every node must see the bundle and the images at the same paths (a shared file
system) and have imgkit installed, as for any Ray job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgkit.data.dataset import Dataset, Reject
from imgkit.data.images import open_image, to_array
from imgkit.errors import BadImageError, ImgkitError
from imgkit.infer.inputs import (
    RejectCounter,
    is_dataset_folder,
    iter_input_paths,
    shard_bounds,
)
from imgkit.infer.predict import (
    Predictor,
    _trained_on,
    default_split,
    image_loader,
    prediction_frame,
)
from imgkit.infer.segment import flip_tta, segment_entries, segmented
from imgkit.infer.tta import tta_proba

RAY_HINT = 'pip install -e ".[ray]" (or pip install "imgkit[ray]")'


class MissingRayError(ImgkitError):
    """Ray (the ``ray`` extra) is not installed."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` None starts a local Ray (or joins
    ``RAY_ADDRESS`` when set); ``workers`` actors, each with ``gpus`` GPUs."""

    address: str | None = None
    workers: int = 2
    gpus: float = 0.0


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
    """One Ray actor: loads the bundle once, then turns batches of paths into outputs.

    ``job`` says what to run: ``run`` (the bundle folder), ``task``, ``trust``,
    ``runtime``, ``temperature`` and ``threshold`` as the driver resolved them, ``kind``
    ("predict", "tta" or "segment"), ``views``, ``seed`` and ``flip`` (segment's TTA).
    """

    def __init__(self, job: dict):
        from imgkit.infer.runtime import open_bundle

        self.job = job
        self.bundle = open_bundle(
            job["run"], task=job["task"], trust=job["trust"], runtime=job["runtime"]
        )
        self.bundle.meta["temperature"] = job["temperature"]
        self.bundle.meta["threshold"] = job["threshold"]
        self.loaders: dict[str, Callable] = {}
        # Every batch has the same columns and shapes, even one where no image could be
        # read, so Ray can hand batches on without ragged tensors.
        if job["kind"] == "segment":
            self.out_shape = tuple(self.bundle.input_size)
        else:
            self.out_shape = (len(self.bundle.classes),)
            self.predictor = Predictor(self.bundle)

    def _decode(self, path: str, invert: str) -> tuple[np.ndarray, tuple[int, int]]:
        if self.job["kind"] == "segment":
            with open_image(Path(path)) as img:
                size = tuple(self.bundle.input_size)
                return to_array(img, size, self.bundle.channels, "stretch"), img.size
        if invert not in self.loaders:
            self.loaders[invert] = image_loader(self.bundle, invert)
        return self.loaders[invert](Path(path)), (0, 0)

    def __call__(self, batch: dict) -> dict:
        arrays, errors, sizes = [], [], []
        for path, invert in zip(batch["path"], batch["invert"], strict=True):
            try:
                array, size = self._decode(str(path), str(invert))
                arrays.append(array)
                errors.append("")
            except BadImageError as e:
                errors.append(e.reason)
                size = (0, 0)
            except OSError as e:
                errors.append(e.strerror or str(e))
                size = (0, 0)
            sizes.append(size)
        good = np.array([not e for e in errors], dtype=bool)
        full = np.zeros((len(errors), *self.out_shape))
        if arrays:
            full[good] = self._run(np.stack(arrays))
        return {"path": batch["path"], "error": np.array(errors), "out": full,
                "size": np.array(sizes, dtype=np.int64)}  # fmt: skip

    def _run(self, arrays: np.ndarray) -> np.ndarray:
        kind = self.job["kind"]
        if kind == "segment":
            model = self.bundle.model

            def predict(x):
                return np.asarray(model.predict_on_batch(np.asarray(x, dtype=np.float32)))

            maps = flip_tta(predict, arrays) if self.job["flip"] else predict(arrays)
            return maps[..., 0]
        if kind == "tta":
            return tta_proba(self.predictor, arrays, self.job["views"], self.job["seed"])
        return self.predictor.proba(arrays)


# --- the driver -----------------------------------------------------------------------


def predict_entries(bundle, inputs: Sequence, stdin, split: str | None, invert: str):
    """``(path, invert mode, None)`` per image and ``(None, None, reject)`` per bad input,
    in the order the local ``predict`` reads them; a bundle's own training dataset is
    never inverted in "auto" (as :func:`imgkit.infer.predict.split_batches`)."""
    for item in inputs:
        if str(item) != "-" and is_dataset_folder(item):
            ds = Dataset.load(item)
            mode = "never" if invert == "auto" and _trained_on(bundle, ds) else invert
            for rel in ds.rows(default_split(ds, split))["path"]:
                yield str(ds.abspath(rel)), mode, None
        else:
            for path, reject in iter_input_paths([item], stdin):
                yield (None, None, reject) if reject else (str(path), invert, None)


def run_on_ray(
    bundle,
    entries: list[tuple],
    job: dict,
    options: RayOptions,
    batch_size: int,
    on_reject: Callable[[Reject], None],
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[list[Path], np.ndarray, np.ndarray]]:
    """Run ``entries`` (see :func:`predict_entries`) through an actor pool, in order.

    Yields:
        ``(paths, outputs, own sizes)`` per batch that had a readable image.
    """
    import ray

    start, stop = shard_bounds(len(entries), shard)
    items = []
    for path, invert, reject in entries[start:stop]:
        if reject is not None:
            on_reject(reject)
        else:
            items.append({"path": path, "invert": invert})
    if not items:
        return
    job = {**job, "run": str(bundle.path), "trust": bundle.trust,
           "temperature": float(bundle.meta.get("temperature") or 1.0),
           "threshold": bundle.meta.get("threshold")}  # fmt: skip
    ds = ray.data.from_items(items).map_batches(
        BatchRunner,
        fn_constructor_kwargs={"job": job},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_gpus=options.gpus or None,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        good = batch["error"] == ""
        for path, error in zip(batch["path"][~good], batch["error"][~good], strict=True):
            on_reject(Reject(str(path), str(error)))
        if good.any():
            paths = [Path(p) for p in batch["path"][good]]
            yield paths, batch["out"][good], batch["size"][good]


def ray_predict(
    bundle,
    inputs: Sequence,
    stdin=None,
    split: str | None = None,
    batch_size: int = 64,
    invert: str = "auto",
    on_reject: Callable[[Reject], None] | None = None,
    options: RayOptions = RayOptions(),
    *,
    runtime: str = "auto",
    views: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
):
    """``predict`` (or ``tta`` with ``views``) on Ray: the local command's DataFrames.

    Raises:
        ImgkitError: not a single image could be read (as locally).
    """

    connect(options)
    reject = RejectCounter(on_reject)

    entries = list(predict_entries(bundle, inputs, stdin, split, invert))
    kind = "predict" if views is None else "tta"
    job = {"task": "classification", "runtime": runtime, "kind": kind,
           "views": views or 1, "seed": seed, "flip": False}  # fmt: skip
    threshold = bundle.meta.get("threshold")
    threshold = float(threshold) if threshold is not None else None
    read = 0
    for paths, proba, _ in run_on_ray(bundle, entries, job, options, batch_size, reject, shard):
        read += len(paths)
        yield prediction_frame(paths, proba, bundle.classes, threshold)
    if not read and (shard is None or reject.count):
        raise reject.nothing_read()


def ray_segment(
    bundle,
    inputs: Sequence,
    stdin=None,
    split: str | None = None,
    batch_size: int = 16,
    tta: bool = False,
    on_reject: Callable[[Reject], None] | None = None,
    options: RayOptions = RayOptions(),
    *,
    runtime: str = "auto",
    shard: tuple[int, int] | None = None,
):
    """``segment`` on Ray: the local command's :class:`imgkit.infer.segment.Segmented`
    items, in order."""
    connect(options)
    truths: dict[str, Path] = {}
    entries = [
        (None, None, r) if r is not None else (str(p), "never", None)
        for p, r in segment_entries(inputs, stdin, split, truths)
    ]
    job = {"task": "segmentation", "runtime": runtime, "kind": "segment", "flip": tta}
    reject = on_reject or (lambda r: None)
    for paths, maps, sizes in run_on_ray(bundle, entries, job, options, batch_size, reject, shard):
        for path, m, size in zip(paths, maps, sizes, strict=True):
            yield segmented(path, m, size, truths)
