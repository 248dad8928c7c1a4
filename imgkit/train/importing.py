"""Bring your own model: a Keras file or SavedModel made elsewhere becomes a bundle.

:func:`import_model` loads the model (:mod:`imgkit.models.foreign`), wraps it so it
takes raw 0-255 pixels like imgkit's own models, checks it against the classes given,
and writes an ordinary bundle (model.keras + imgkit.json) that predict, tta, segment
and export use unchanged. What a model file cannot say (class names, the pixel range
it was trained on, the background polarity) the caller gives.

The bundle is built in a temporary folder and moved into place when complete. A
SavedModel is copied into the bundle (``savedmodel/``) and the model.keras refers to
that copy by its absolute path, so such a bundle is not to be moved, and, like any
SavedModel in Keras, loads only when trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgkit.bundle import BUNDLE_META, MODEL_FILE, calibration_meta, save_meta, trust_from_env
from imgkit.data.images import RESIZE_MODES
from imgkit.data.polarity import POLARITIES
from imgkit.errors import BadInputError, OutputExistsError
from imgkit.fileio import atomic_dir
from imgkit.models.foreign import (
    ACTIVATIONS,
    IMPORT_TASKS,
    PIXEL_RANGES,
    SAVEDMODEL_DIR,
    load_foreign,
    wrap,
)
from imgkit.train.segmentation import CLASSES as SEGMENTATION_CLASSES
from imgkit.train.segmentation import THRESHOLD as SEGMENTATION_THRESHOLD


def import_model(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    classes: list[str] | None,
    pixels: str,
    task: str = "classification",
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    polarity: str | None = None,
    resize: str = "stretch",
    activation: str | None = None,
    trust: bool | None = None,
    overwrite: bool = False,
) -> dict:
    """Write a bundle for a model made elsewhere and return its imgkit.json content.

    Args:
        model_path: a ``.keras`` file, a legacy ``.h5`` or a SavedModel folder.
        output: the bundle folder to write.
        classes: class names in the model's output order (classification; for two
            classes a 1-unit sigmoid gives P(classes[1])). Segmentation: None.
        pixels: the range the model was trained on: a key of
            :data:`imgkit.models.foreign.PIXEL_RANGES` (0-1, -1-1, 0-255, caffe).
        task: "classification" (or "classify") or "segmentation" (or "segment").
        size: (height, width), for a model whose input size is open or flat.
        channels: 1 or 3, for a model whose channel count is open or flat.
        polarity: the training images' background: "dark" (light things on black,
            like Fashion-MNIST: predict inverts photos on white), "light", or
            None/"none" (never invert).
        resize: how predict fits images to the input: stretch, pad or crop.
        activation: what the model ends in, when its last layer does not say:
            "softmax", "sigmoid" or "linear" (logits; a softmax/sigmoid is added).
        trust: run the model's code (Lambda layers, a SavedModel's graph); None: as
            ``IMGKIT_TRUST_CODE`` says.
        overwrite: replace a bundle already in ``output``.

    Raises:
        BadInputError: a missing or unreadable model, classes that do not fit its
            output, an input imgkit cannot feed, a bad option.
        UntrustedCodeError: the model carries code and ``trust`` is not given.
        OutputExistsError: ``output`` exists (a bundle without ``overwrite``, or
            anything else that is not empty).
    """
    task = IMPORT_TASKS.get(task, task)
    classes = _check_options(task, classes, pixels, polarity, resize, activation)
    source, out = Path(model_path), Path(output)
    if not source.exists():
        raise BadInputError(f"{source}: no such model file or folder")
    replacing = _check_output(out, source, overwrite)
    trust = trust_from_env() if trust is None else bool(trust)
    staging = out.with_name(f".{out.name}.new-{secrets.token_hex(4)}") if replacing else out
    with atomic_dir(staging) as work:
        copy = None
        if source.is_dir():
            copy = work / SAVEDMODEL_DIR
            shutil.copytree(source, copy)
        foreign = load_foreign(source, trust, savedmodel_copy=copy)
        wrapped = wrap(foreign, pixels, task, size, channels, activation)
        _check_classes(task, classes, wrapped)
        if copy is not None:
            # What model.keras records: the copy where the bundle will be, not here.
            foreign.core.filepath = str(out.resolve() / SAVEDMODEL_DIR)
        wrapped.model.save(work / MODEL_FILE)
        meta = _meta(source, foreign.format, task, classes, pixels, polarity, resize, wrapped)
        if copy is None:  # a SavedModel copy loads only from where the bundle will be
            meta["imported"]["reload_max_abs_diff"] = _reload_parity(
                wrapped.model, work / MODEL_FILE, trust
            )
        saved = save_meta(work, meta)
        meta = json.loads(saved.read_text(encoding="utf-8"))
    if replacing:
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    return meta


def _check_options(task, classes, pixels, polarity, resize, activation) -> list[str]:
    if task not in IMPORT_TASKS.values():
        raise BadInputError(f"--task must be one of {', '.join(IMPORT_TASKS)}, got {task!r}")
    if pixels not in PIXEL_RANGES:
        raise BadInputError(f"--pixels must be one of {', '.join(PIXEL_RANGES)}, got {pixels!r}")
    if polarity not in (None, *POLARITIES):
        raise BadInputError(f"--polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    if resize not in RESIZE_MODES:
        raise BadInputError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if activation not in (None, *ACTIVATIONS):
        raise BadInputError(
            f"--activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    if task == "segmentation":
        if classes not in (None, [], SEGMENTATION_CLASSES):
            raise BadInputError(
                f"segmentation bundles have the classes {SEGMENTATION_CLASSES}; leave out --classes"
            )
        if resize != "stretch":
            raise BadInputError("segmentation resizes by stretching (masks go back to each size)")
        return list(SEGMENTATION_CLASSES)
    classes = [str(c).strip() for c in classes or []]
    if len(classes) < 2:
        raise BadInputError(
            "a classifier needs its class names, at least 2, in output order (--classes a,b,...)"
        )
    if any(not c for c in classes) or len(set(classes)) != len(classes):
        raise BadInputError(f"--classes: empty or repeated names in {classes}")
    return classes


def _check_output(out: Path, source: Path, overwrite: bool) -> bool:
    """Whether ``out`` is an old bundle to replace; refuse anything else that exists."""
    src, dest = source.resolve(), out.resolve()
    if dest == src or src in dest.parents or dest in src.parents:
        raise BadInputError(f"{out}: the output and the model {source} overlap; choose another -o")
    if not out.exists() and not out.is_symlink():
        return False
    if not out.is_dir() or out.is_symlink():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if (out / BUNDLE_META).is_file():
        if not overwrite:
            raise OutputExistsError(
                f"{out}: already holds a model bundle; pass --overwrite to replace it"
            )
        return True
    if any(out.iterdir()):
        raise OutputExistsError(f"{out}: exists and is not a model bundle; choose a new folder")
    out.rmdir()  # an empty folder: the finished bundle takes its place
    return False


def _check_classes(task: str, classes: list[str], wrapped) -> None:
    if task == "segmentation":
        return
    width, n = wrapped.width, len(classes)
    if wrapped.output == "sigmoid" and n != 2:
        raise BadInputError(
            f"the model has 1 output unit (P of the second class), so 2 classes, "
            f"but --classes names {n}"
        )
    if wrapped.output == "softmax" and n != width:
        raise BadInputError(
            f"the model has {width} output units but --classes names {n} ({', '.join(classes)})"
        )


def _reload_parity(model, path: Path, trust: bool) -> float:
    """Reload the saved file as predict will and compare outputs on random images."""
    import keras

    shape = tuple(int(v) for v in model.input_shape[1:])
    x = np.random.default_rng(1).integers(0, 256, (4, *shape)).astype(np.float32)
    try:
        again = keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as e:  # a layer Keras can save but not rebuild
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(
            f"the imported model does not load back from {MODEL_FILE} ({first})"
        ) from e
    a = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    b = np.asarray(again.predict_on_batch(x), dtype=np.float64)
    return float(np.abs(a - b).max())


def _digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta(source: Path, fmt: str, task, classes, pixels: str, polarity, resize, wrapped) -> dict:
    meta = {
        "task": task,
        "model": "imported",
        "classes": classes,
        "input_size": list(wrapped.input_size),
        "channels": wrapped.channels,
        "resize": resize,
        "pixels": {**PIXEL_RANGES[pixels], "range": pixels, "inside_model": True},
        "polarity": None if polarity in (None, "none") else polarity,
        "output": wrapped.output,
        "imported": {
            "from": str(source.resolve()),
            "format": fmt,
            "sha256": _digest(source),
            "outputs": wrapped.width,
            **wrapped.info,
        },
        "train_args": {},
        "metrics": {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if task == "segmentation":
        meta.update(calibration_meta(threshold=SEGMENTATION_THRESHOLD))
    return meta
