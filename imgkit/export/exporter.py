"""``imgkit export``: write a bundle's model in other formats, each checked, all or nothing.

Every format is written under a temporary name beside its final one, loaded back in
its own runtime and run on real images (:mod:`imgkit.export.parity`). Only when every
requested format is within tolerance are they renamed into place and recorded under
``exports`` in imgkit.json (written last, atomically); a failure removes what was
written and leaves imgkit.json as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgkit import __version__
from imgkit.bundle import EXPORT_FILES, file_sha256, save_meta
from imgkit.errors import BadInputError, GateFailedError
from imgkit.export.formats import (
    FORMATS,
    QUANTIZE,
    inference_model,
    require,
    runner,
    write_onnx,
    write_savedmodel,
    write_tflite,
)
from imgkit.export.parity import DEFAULT_LIMIT, CheckImages, check_images, compare, outputs
from imgkit.fileio import atomic_path

DEFAULT_TOLERANCE = 1e-4


class ParityError(GateFailedError):
    """An exported model's probabilities differ from Keras's by more than the tolerance."""


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


def _write(fmt: str, model, tmp: Path, quantize: str, opset, images: CheckImages) -> dict:
    if fmt == "onnx":
        return write_onnx(model, tmp, opset)
    if fmt == "savedmodel":
        return write_savedmodel(model, tmp)
    return write_tflite(model, tmp, quantize, images.arrays)


def _export_one(
    bundle, fmt: str, tmp: Path, images: CheckImages, keras_out: np.ndarray, options: dict
) -> dict:
    quantize = options["quantize"] if fmt == "tflite" else "none"
    tolerance = options["tolerance"]
    model = inference_model(bundle.model)
    info = _write(fmt, model, tmp, quantize, options["opset"], images)
    parity = compare(bundle, keras_out, outputs(runner(fmt, tmp), images.arrays), images.truth)
    accuracy = parity.pop("accuracy")
    quantized = quantize != "none"
    parity.update(
        images=len(images.arrays),
        source=images.source,
        tolerance=None if quantized else tolerance,
    )
    diff = parity["max_abs_diff"]
    if not quantized and not diff <= tolerance:  # NaN fails too
        raise ParityError(
            f"{fmt} export differs from Keras by {diff:.3g} (over --tolerance {tolerance:g}) "
            f"on the {images.source}; nothing was written"
        )
    record = {"format": fmt, "file": EXPORT_FILES[fmt], **info}
    if not tmp.is_dir():
        record["sha256"] = file_sha256(tmp)
    record.update(
        bytes=_size(tmp),
        parity=parity,
        exported=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        imgkit_version=__version__,
    )
    if quantized:
        accuracy["change"] = accuracy["export"] - accuracy["keras"]
        record["accuracy"] = accuracy
    return record


def export_bundle(
    bundle,
    formats: Sequence[str],
    *,
    check: Sequence[str | os.PathLike] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    quantize: str = "none",
    limit: int = DEFAULT_LIMIT,
    opset: int | None = None,
    on_info: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Export a bundle's model in each of ``formats`` into the bundle, checked against Keras.

    Args:
        bundle: a loaded Bundle (classification or segmentation).
        formats: some of "onnx", "savedmodel", "tflite".
        check: image files or folders to measure parity on; default the val split of
            the bundle's dataset (when it is at hand).
        tolerance: the largest absolute difference of probabilities allowed. Quantized
            TFLite exports are not held to it: their difference and accuracy change
            are recorded instead.
        quantize: "none", "float16" or "int8" (TFLite only; int8 is calibrated on
            the check images).
        limit: at most this many check images.
        opset: the ONNX opset (default: the converter's).
        on_info: called with a line of progress for the user.

    Returns:
        format -> the record written under ``exports`` in imgkit.json.

    Raises:
        MissingExtraError: a format's packages are not installed.
        ParityError: an export is over the tolerance (nothing is written).
        BadInputError: no check images, or --quantize without tflite.
    """
    formats = list(dict.fromkeys(formats))
    if not formats:
        raise BadInputError("no export format given (choose from onnx, savedmodel, tflite)")
    for fmt in formats:
        require(fmt)
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE} (got {quantize!r})")
    if quantize != "none" and "tflite" not in formats:
        raise BadInputError("--quantize applies to --format tflite only")
    say = on_info or (lambda line: None)
    images = check_images(bundle, check, limit)
    say(f"checking against Keras on the {images.source}")
    keras_out = outputs(bundle.model.predict_on_batch, images.arrays)
    options = {"tolerance": float(tolerance), "quantize": quantize, "opset": opset}
    records = {}
    with contextlib.ExitStack() as stack:
        for fmt in formats:
            target = bundle.path / EXPORT_FILES[fmt]
            tmp = stack.enter_context(_staged(target, folder=fmt == "savedmodel"))
            records[fmt] = _export_one(bundle, fmt, tmp, images, keras_out, options)
            say(f"{fmt}: max difference {records[fmt]['parity']['max_abs_diff']:.3g}")
    meta = dict(bundle.meta)
    meta["exports"] = {**(meta.get("exports") or {}), **records}
    save_meta(bundle.path, meta)
    bundle.meta = meta
    return records
