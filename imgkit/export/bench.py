"""``imgkit bench``: how fast each runtime a bundle has runs its model, measured here.

The images are decoded and resized once, timed on their own (the ``decode`` row: no
runtime can make a command faster than that), and held in memory; then Keras and
every export recorded in imgkit.json (whose file is still the recorded one, and whose
runtime is installed) is loaded, warmed up on one batch, and timed on the same arrays
at batch 1 and at the default batch: the marginal cost per image once loaded, which is
what a long ``imgkit predict`` pays. Each row also carries the largest difference of
its probabilities from Keras's on these images and, for a reduced-precision export,
the accuracy change its export recorded.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgkit.bundle import EXPORT_FILES
from imgkit.errors import BadInputError
from imgkit.export.parity import bundle_dataset, compare
from imgkit.infer.engine import Decoder, decoded_batches
from imgkit.infer.inputs import iter_input_paths
from imgkit.infer.openvino_model import cpu_has_bf16
from imgkit.infer.plan import Item, plan_inputs
from imgkit.infer.runtime import export_problem, export_sha256, load_export

COLUMNS = ("runtime", "precision", "batch", "images_per_s", "max_diff", "accuracy_change")
DEFAULT_LIMIT = 300
# Batch 1 is timed on at most this many images: its rate settles long before 300.
SINGLE_IMAGES = 64
# export -> the module its runtime needs.
_MODULES = {"tflite": "ai_edge_litert", "savedmodel": "tensorflow"}


@dataclass(frozen=True)
class Row:
    """One line of the benchmark (None: not measured for this row)."""

    runtime: str
    precision: str
    batch: int
    images_per_s: float
    max_diff: float | None = None
    accuracy_change: float | None = None


@dataclass(frozen=True)
class Candidate:
    """A runtime to time: its name, precision, how to load it, and its recorded change
    in accuracy (points), when its export recorded one."""

    runtime: str
    precision: str
    load: Callable[[], Callable[[np.ndarray], np.ndarray]]
    accuracy_change: float | None = None


def _decode(bundle, images: Sequence[str | os.PathLike] | None, limit: int, batch: int):
    """The first ``limit`` images as the model takes them, and decoding's images/s."""
    if images:
        items = (Item(p) for p, reject in iter_input_paths(images) if reject is None)
        where = " ".join(str(i) for i in images)
    else:
        ds = bundle_dataset(bundle)
        if ds is None:
            raise BadInputError(
                f"{bundle.path}: its dataset is not at hand to time on its val split; "
                "name images to time on: imgkit bench RUN IMAGES"
            )
        items = (e for e in plan_inputs(bundle, [ds.root], split="val") if isinstance(e, Item))
        where = f"the val split of {ds.root}"
    start = time.perf_counter()
    batches = decoded_batches(itertools.islice(items, limit), Decoder(bundle), batch)
    arrays = [b.arrays for b in batches]
    elapsed = time.perf_counter() - start
    if not arrays:
        raise BadInputError(f"{where}: no image could be read to time on")
    arrays = np.concatenate(arrays)
    return arrays, len(arrays) / max(elapsed, 1e-9)


def _change(record: dict) -> float | None:
    change = (record.get("accuracy") or {}).get("change")
    return None if change is None else 100 * float(change)


def candidates(bundle) -> tuple[list[Candidate], list[str]]:
    """Keras and each export of ``bundle`` that can run here, and why others cannot."""
    found = [Candidate("keras", "fp32", lambda: bundle.model.predict_on_batch)]
    skipped = []
    for key, record in (bundle.meta.get("exports") or {}).items():
        if key not in EXPORT_FILES or not isinstance(record, dict):
            continue
        if key in _MODULES:
            path = bundle.path / EXPORT_FILES[key]
            stale = not path.exists() or record.get("sha256", None) not in (
                None,
                export_sha256(path),
            )
            missing = importlib.util.find_spec(_MODULES[key]) is None
            problem = f"{key}: not the recorded export" if stale else None
            problem = problem or (f"{key}: {_MODULES[key]} is not installed" if missing else None)
        else:
            problem = export_problem(bundle, key)
        if problem:
            skipped.append(problem)
            continue
        found.extend(_export_candidates(bundle, key, record))
    return found, skipped


def _export_candidates(bundle, key: str, record: dict) -> list[Candidate]:
    from imgkit.export.formats import runner

    precision = record.get("precision") or record.get("quantize") or "fp32"
    change = _change(record)
    if key in _MODULES:
        return [Candidate(key, precision, lambda: runner(key, bundle.path / record["file"]))]
    rows = [Candidate(key, precision, lambda: load_export(bundle, key).predict_on_batch, change)]
    # The float32 IR runs at either precision: time the one its export was not checked at.
    if key == "openvino" and cpu_has_bf16():
        other = "fp32" if precision == "bf16" else "bf16"
        again = lambda: load_export(bundle, key, precision=other).predict_on_batch  # noqa: E731
        rows.append(Candidate(key, other, again))
    return rows


def _rate(run, arrays: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Outputs for ``arrays`` in batches of ``batch`` and images/s (after one warm-up)."""
    x = np.asarray(arrays, dtype=np.float32)
    run(x[:batch])
    start = time.perf_counter()
    out = [np.asarray(run(x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64), len(x) / max(time.perf_counter() - start, 1e-9)


def bench(
    bundle,
    images: Sequence[str | os.PathLike] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    batch_size: int = 64,
    on_info: Callable[[str], None] | None = None,
) -> list[Row]:
    """Time decoding, then Keras and each of the bundle's exports, on the same images.

    Args:
        bundle: a loaded Bundle.
        images: image files or folders; default the val split of the bundle's dataset.
        limit: time on at most this many images.
        batch_size: the batch besides batch 1 (predict's default: 64).
        on_info: called with a line of progress for the user.

    Returns:
        The ``decode`` row, then two rows (batch 1, ``batch_size``) per runtime.

    Raises:
        BadInputError: no images to time on.
    """
    say = on_info or (lambda line: None)
    arrays, decode_rate = _decode(bundle, images, limit, batch_size)
    say(f"timing on {len(arrays)} images")
    rows = [Row("decode", "", batch_size, decode_rate)]
    found, skipped = candidates(bundle)
    for line in skipped:
        say(f"skipped {line}")
    reference = None
    for c in found:
        run = c.load()
        out, rate = _rate(run, arrays, batch_size)
        reference = out if reference is None else reference  # Keras comes first
        diff = compare(bundle, reference, out)["max_abs_diff"]
        _, single = _rate(run, arrays[:SINGLE_IMAGES], 1)
        rows.append(Row(c.runtime, c.precision, 1, single, diff, c.accuracy_change))
        rows.append(Row(c.runtime, c.precision, batch_size, rate, diff, c.accuracy_change))
        say(f"{c.runtime} ({c.precision}): {rate:.1f} images/s at batch {batch_size}")
    return rows
