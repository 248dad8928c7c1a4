"""``imgkit export``: write a bundle's model in other formats, each checked, all or nothing.

Every export is written under a temporary name beside its final one, loaded back in
its own runtime and run on real images (:mod:`imgkit.export.parity`), timed as it
runs. A full-precision export must match Keras's probabilities within a tolerance; a
reduced-precision one (int8, bf16, float16) must lose no more than ``max_drop`` points
of accuracy (IoU for segmentation), and its change and label agreement are recorded.
Only when every export passes are they renamed into place and recorded under
``exports`` in imgkit.json (written last, atomically); a failure removes what was
written and leaves imgkit.json as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgkit import __version__
from imgkit.bundle import EXPORT_FILES, save_meta
from imgkit.errors import BadInputError, GateFailedError
from imgkit.export.formats import (
    CALIBRATION_IMAGES,
    FORMATS,
    QUANTIZE,
    inference_model,
    require,
    runner,
    write_onnx,
    write_savedmodel,
    write_tflite,
)
from imgkit.export.parity import (
    BATCH,
    DEFAULT_LIMIT,
    CheckImages,
    calibration_images,
    check_images,
    compare,
    outputs,
)
from imgkit.export.reduced import (
    require_openvino,
    resolve_precision,
    write_onnx_int8,
    write_openvino,
)
from imgkit.fileio import atomic_path
from imgkit.infer.openvino_model import OpenVinoModel
from imgkit.infer.runtime import default_threads, export_sha256

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MAX_DROP = 0.5


class ParityError(GateFailedError):
    """An exported model's probabilities differ from Keras's by more than the tolerance."""


class AccuracyDropError(GateFailedError):
    """A reduced-precision export loses more accuracy (IoU) than --max-drop allows."""


@dataclass(frozen=True)
class ExportOptions:
    """How exports are checked.

    Attributes:
        tolerance: full precision: the largest absolute difference of probabilities.
        max_drop: reduced precision: the most accuracy (IoU) an export may lose against
            Keras's, in points (0.5 = half a percentage point).
        limit: check on at most this many images.
        calibration: int8: calibrate on at most this many images, spread over the
            train split when the dataset is at hand, else the first check images.
        opset: the ONNX opset (default: the converter's).
    """

    tolerance: float = DEFAULT_TOLERANCE
    max_drop: float = DEFAULT_MAX_DROP
    limit: int = DEFAULT_LIMIT
    calibration: int = CALIBRATION_IMAGES
    opset: int | None = None

    def as_dict(self) -> dict:
        return {
            "tolerance": float(self.tolerance),
            "max_drop": float(self.max_drop),
            "calibration": int(self.calibration),
            "opset": self.opset,
        }


def parse_formats(values: Sequence[str]) -> list[str]:
    """``["onnx,tflite", "savedmodel"]`` -> ``["onnx", "tflite", "savedmodel"]`` (once each).

    Raises:
        BadInputError: an unknown format.
    """
    found = [f.strip().lower() for v in values for f in str(v).split(",") if f.strip()]
    unknown = [f for f in found if f not in FORMATS]
    if unknown:
        raise BadInputError(f"unknown export format {unknown[0]!r} (choose from {FORMATS})")
    return list(dict.fromkeys(found))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@contextlib.contextmanager
def _staged(target: Path, folder: bool) -> Iterator[Path]:
    """A temporary file (or folder) beside ``target``, renamed over it when the block
    ends well and removed when it does not."""
    if not folder:
        with atomic_path(target) as tmp:
            yield tmp
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0700 would hide a shared bundle's export
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # A folder cannot be renamed over a full one: the old one steps aside first.
    aside = tmp.with_suffix(".old")
    if target.exists():
        os.replace(target, aside)
    os.replace(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)


@dataclass(frozen=True)
class Target:
    """One export to write: its name in imgkit.json, its format and its precision."""

    key: str
    fmt: str
    precision: str = "fp32"

    @property
    def reduced(self) -> bool:
        """Held to --max-drop (accuracy), not to --tolerance (probabilities)."""
        return self.precision != "fp32"


def plan_targets(formats: Sequence[str], quantize: str = "none", precision: str = "fp32"):
    """The exports ``formats`` ask for, with ``quantize`` (onnx: int8, as a second file
    beside model.onnx; tflite: float16 or int8) and ``precision`` (openvino: fp32, bf16
    or int8, already resolved from "auto").

    Raises:
        BadInputError: --quantize or --precision where no format takes it.
    """
    if quantize != "none" and not {"onnx", "tflite"} & set(formats):
        raise BadInputError("--quantize applies to --format onnx (int8) or tflite only")
    if quantize == "float16" and "onnx" in formats:
        raise BadInputError("--quantize float16 applies to --format tflite only")
    targets = []
    for fmt in formats:
        if fmt == "openvino":
            key = "openvino-int8" if precision == "int8" else "openvino"
            targets.append(Target(key, fmt, precision))
        elif fmt == "tflite":
            targets.append(Target(fmt, fmt, "fp32" if quantize == "none" else quantize))
        else:
            targets.append(Target(fmt, fmt))
        if fmt == "onnx" and quantize == "int8":
            targets.append(Target("onnx-int8", fmt, "int8"))
    return targets


def timed_outputs(run, arrays: np.ndarray) -> tuple[np.ndarray, float]:
    """A model's outputs for ``arrays`` and its images/s, the first batch (which pays
    for a runtime's first-call set-up) left out of the timing, or run twice when it is
    the only one."""
    first = outputs(run, arrays[:BATCH])
    rest = arrays[BATCH:] if len(arrays) > BATCH else arrays[:BATCH]
    start = time.perf_counter()
    later = outputs(run, rest)
    speed = len(rest) / max(time.perf_counter() - start, 1e-9)
    return (np.concatenate([first, later]) if len(arrays) > BATCH else first), speed


def _write(target: Target, model, tmp: Path, onnx_source, images: CheckImages, opts) -> dict:
    own = images.calibration
    calibration = own if own is not None else images.arrays[: opts["calibration"]]
    if target.key == "onnx":
        return write_onnx(model, tmp, opts["opset"])
    if target.key == "onnx-int8":
        return write_onnx_int8(onnx_source(), tmp, calibration)
    if target.fmt == "openvino":
        return write_openvino(onnx_source(), tmp, target.precision, calibration)
    if target.fmt == "savedmodel":
        return write_savedmodel(model, tmp)
    quantize = "none" if target.precision == "fp32" else target.precision
    return write_tflite(model, tmp, quantize, calibration)


def _runner(target: Target, tmp: Path):
    if target.key == "onnx-int8":
        return runner("onnx", tmp)
    if target.fmt == "openvino":
        return OpenVinoModel(tmp, target.precision, default_threads()).predict_on_batch
    return runner(target.fmt, tmp)


def _gate(target: Target, record: dict, images: CheckImages, options: dict) -> None:
    """Refuse an export over --tolerance (full precision) or --max-drop (reduced)."""
    parity, name = record["parity"], f"{target.fmt} ({target.precision})"
    if not target.reduced:
        diff, tolerance = parity["max_abs_diff"], options["tolerance"]
        if not diff <= tolerance:  # NaN fails too
            raise ParityError(
                f"{target.fmt} export differs from Keras by {diff:.3g} (over --tolerance "
                f"{tolerance:g}) on the {images.source}; nothing was written"
            )
        return
    accuracy, max_drop = record["accuracy"], options["max_drop"]
    drop = -100 * accuracy["change"]
    if not drop <= max_drop:
        raise AccuracyDropError(
            f"{name} export loses {drop:.2f} points of {accuracy['metric']} against "
            f"{accuracy['against']} (over --max-drop {max_drop:g}) on the {images.source}; "
            "nothing was written"
        )


def _export_one(
    bundle, target: Target, tmp: Path, images: CheckImages, keras_out: np.ndarray, ctx
) -> dict:
    options, onnx_source = ctx
    model = inference_model(bundle.model)
    info = _write(target, model, tmp, onnx_source, images, options)
    out, speed = timed_outputs(_runner(target, tmp), images.arrays)
    parity = compare(bundle, keras_out, out, images.truth)
    accuracy = parity.pop("accuracy")
    parity.update(
        images=len(images.arrays),
        source=images.source,
        tolerance=None if target.reduced else options["tolerance"],
    )
    record = {"format": target.fmt, "file": EXPORT_FILES[target.key], **info}
    record.update(
        sha256=export_sha256(tmp),
        bytes=_size(tmp),
        parity=parity,
        images_per_s=round(speed, 1),
        exported=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        imgkit_version=__version__,
    )
    if target.reduced:
        accuracy["change"] = accuracy["export"] - accuracy["keras"]
        accuracy["max_drop"] = options["max_drop"]
        record["accuracy"] = accuracy
    _gate(target, record, images, options)
    return record


def _onnx_source(stack: contextlib.ExitStack, bundle, staged: dict, opset):
    """A function giving the float32 ONNX file the reduced exports start from: the
    model.onnx being exported in this call, else one written once to a temporary
    folder (removed when the export ends)."""
    made: list[Path] = []

    def source() -> Path:
        if "onnx" in staged:
            return staged["onnx"]
        if not made:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imgkit-")))
            made.append(folder / EXPORT_FILES["onnx"])
            write_onnx(inference_model(bundle.model), made[0], opset)
        return made[0]

    return source


def export_bundle(
    bundle,
    formats: Sequence[str],
    *,
    check: Sequence[str | os.PathLike] | None = None,
    quantize: str = "none",
    precision: str = "auto",
    options: ExportOptions = ExportOptions(),
    on_info: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Export a bundle's model in each of ``formats`` into the bundle, checked against Keras.

    Args:
        bundle: a loaded Bundle (classification or segmentation).
        formats: some of "onnx", "openvino", "savedmodel", "tflite".
        check: image files or folders to check on; default the val split of the
            bundle's dataset (when it is at hand).
        quantize: "none"; "int8" (onnx: also model.int8.onnx; tflite: an int8 file);
            "float16" (tflite only). int8 is calibrated on train images (else the check images).
        precision: openvino: "fp32", "bf16", "int8", or "auto" (bf16 where the CPU
            runs it, else fp32).
        options: tolerance, max drop, check and calibration image counts, ONNX opset.
        on_info: called with a line of progress for the user.

    Returns:
        export name (``onnx``, ``onnx-int8``, ``openvino``, ...) -> the record written
        under ``exports`` in imgkit.json.

    Raises:
        MissingExtraError: a format's packages are not installed.
        ParityError: a full-precision export is over the tolerance (nothing is written).
        AccuracyDropError: a reduced-precision export loses more than ``max_drop``
            points of accuracy (IoU for segmentation); nothing is written.
        BadInputError: no check images, or --quantize/--precision where no format takes it.
    """
    formats = list(dict.fromkeys(formats))
    if not formats:
        raise BadInputError(f"no export format given (choose from {', '.join(FORMATS)})")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE} (got {quantize!r})")
    if precision != "auto" and "openvino" not in formats:
        raise BadInputError("--precision applies to --format openvino only")
    plan_targets(formats, quantize)  # refuse a stray --quantize before any work
    for fmt in formats:
        require(fmt)
    say = on_info or (lambda line: None)
    if "openvino" in formats:
        require_openvino(precision)
        precision, note = resolve_precision(precision)
        say(f"openvino: {note}")
    targets = plan_targets(formats, quantize, precision)
    images = check_images(bundle, check, options.limit)
    say(f"checking against Keras on the {images.source}")
    if any(t.precision == "int8" for t in targets):
        images.calibration = calibration_images(bundle, options.calibration)
        if images.calibration is not None:
            say(f"calibrating int8 on {len(images.calibration)} train images")
    keras_out = outputs(bundle.model.predict_on_batch, images.arrays)
    records = {}
    with contextlib.ExitStack() as stack:
        staged: dict[str, Path] = {}
        ctx = (options.as_dict(), _onnx_source(stack, bundle, staged, options.opset))
        for target in targets:
            folder = target.fmt in ("savedmodel", "openvino")
            target_path = bundle.path / EXPORT_FILES[target.key]
            staged[target.key] = stack.enter_context(_staged(target_path, folder=folder))
            record = _export_one(bundle, target, staged[target.key], images, keras_out, ctx)
            records[target.key] = record
            say(_progress(target, record))
    meta = dict(bundle.meta)
    meta["exports"] = {**(meta.get("exports") or {}), **records}
    save_meta(bundle.path, meta)
    bundle.meta = meta
    return records


def _progress(target: Target, record: dict) -> str:
    line = f"{target.key}: max difference {record['parity']['max_abs_diff']:.3g}"
    if target.reduced:
        a = record["accuracy"]
        line += f", {a['metric']} change {100 * a['change']:+.2f} points"
    return f"{line}, {record['images_per_s']:.0f} images/s"
