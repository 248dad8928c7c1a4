"""Write a Keras model as ONNX, SavedModel or TFLite, and run what was written.

(OpenVINO and int8 ONNX start from the ONNX file: :mod:`imgkit.export.reduced`.)

Each format goes through Keras's own ``model.export``: ONNX through tf2onnx (Keras
hands it the model's traced ``tf.function``), SavedModel through
Keras's ExportArchive (a ``serving_default`` signature taking an image batch, as TF
Serving wants), TFLite through ``tf.lite.TFLiteConverter`` on such a SavedModel, with
TFLite's own post-training quantization (float16, or int8 calibrated on real images).
Each writer returns what imgkit.json records about the file; :func:`runner` loads a
written file in the runtime it is meant for (ONNX Runtime, TensorFlow, the LiteRT
interpreter) so parity is measured on the real thing.

This module is one of the few that import TensorFlow by name (SavedModel and TFLite
need it), always inside a function. Every format needs Keras's TensorFlow backend: under
JAX, Keras exports ONNX through jax2onnx, whose files ONNX Runtime refused (MaxPool:
"Unsupported pooling size", jax2onnx 0.17.1), and TFLite not at all; :func:`require`
says so in one line.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from imgkit.backend import MissingBackendError
from imgkit.errors import BadBundleError
from imgkit.infer.runtime import EXTRA_HINT, MissingExtraError, OnnxModel, default_threads

FORMATS = ("onnx", "openvino", "savedmodel", "tflite")
QUANTIZE = ("none", "float16", "int8")
# int8 calibration: this many images, one at a time, as TFLite's converter wants them.
CALIBRATION_IMAGES = 100

# format -> the modules it needs (beyond Keras), by import name.
_NEEDS = {
    "onnx": ("onnx", "onnxruntime"),
    # OpenVINO converts the ONNX export (imgkit.export.reduced checks for openvino itself).
    "openvino": ("onnx",),
    "savedmodel": ("tensorflow",),
    "tflite": ("tensorflow", "ai_edge_litert"),
}


def _backend() -> str:
    import keras

    return keras.backend.backend()


def require(fmt: str) -> None:
    """Check, before any work, that what ``fmt`` needs is installed.

    Raises:
        MissingBackendError: Keras runs on another backend (JAX): one line saying how to
            export with TensorFlow.
        MissingExtraError: one line naming what is missing and how to install it.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} (got {fmt!r})")
    backend = _backend()
    if backend != "tensorflow":
        raise MissingBackendError(
            f"imgkit export --format {fmt} needs Keras's TensorFlow backend (this is "
            f'{backend}): pip install -e ".[cpu,export]" and run it with '
            "KERAS_BACKEND=tensorflow (the bundle is the same)"
        )
    needs = [*_NEEDS[fmt], "tf2onnx"] if fmt in ("onnx", "openvino") else _NEEDS[fmt]
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"imgkit export --format {fmt} needs the export extra "
            f"({', '.join(missing)} not installed): {EXTRA_HINT}"
        )


def version(dist: str) -> str:
    """An installed distribution's version, or "?"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def converter_output() -> Iterator[None]:
    """Keep converters' chatter off stdout (which carries data), and off stderr too unless
    ``--verbose``: TF, MLIR, tf2onnx and LiteRT print from C++ straight to the file
    descriptors, past any Python redirection. Errors still arrive as exceptions."""
    verbose = os.environ.get("IMGKIT_VERBOSE") == "1"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
    except (OSError, ValueError):  # no real descriptors (an embedded interpreter)
        saved = None
    if saved is not None:
        sink = os.dup(2) if verbose else os.open(os.devnull, os.O_WRONLY)
        os.dup2(sink, 1)
        if not verbose:
            os.dup2(sink, 2)
        os.close(sink)
    quiet = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow", "absl")]
    levels = [logger.level for logger in quiet]
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for logger in quiet:
                logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
            yield
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
        if saved is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _is_augmentation(layer) -> bool:
    # Keras's random image layers (RandomFlip, RandomRotation, RandomZoom, ...): what
    # imgkit.train.augment puts in front of a model.
    kind = type(layer)
    return kind.__name__.startswith("Random") and kind.__module__.startswith("keras.")


def inference_model(model):
    """``model`` without its training-only augmentation layers.

    They pass images through unchanged at inference, but a traced graph still holds
    their random-number ops, which tf2onnx and TFLite cannot convert. A bundle with
    augmentation is the input, those layers, then the model itself as one nested layer
    (:func:`imgkit.train.augment.with_augmentation`): the nested model is what is
    exported. The parity check compares it with the whole model, so a difference would
    show there.

    Raises:
        BadBundleError: augmentation layers arranged in another way.
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not any(_is_augmentation(layer) for layer in layers):
        return model
    rest = [layer for layer in layers if not _is_augmentation(layer)]
    if len(rest) == 1 and isinstance(rest[0], keras.Model):
        return rest[0]
    raise BadBundleError(
        f"model {model.name!r} has augmentation layers that cannot be left out of the export "
        "(imgkit exports a model whose augmentation layers come first, before one nested model)"
    )


def write_onnx(model, path: Path, opset: int | None = None) -> dict:
    """Write ``model`` as ONNX to ``path``; return its record (opset, converter)."""
    import keras

    converter = "tf2onnx"
    with converter_output():
        model.export(str(path), format="onnx", verbose=False, opset_version=opset)
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "opset": used,
        "converter": f"{converter} {version(converter)} via keras {keras.__version__} "
        "model.export(format='onnx')",
        "runtime": f"onnxruntime {version('onnxruntime')}",
    }


def write_savedmodel(model, path: Path) -> dict:
    """Write ``model`` as a TF Serving SavedModel into the folder ``path``."""
    import keras
    import tensorflow as tf

    with converter_output():
        model.export(str(path), format="tf_saved_model", verbose=False)
    return {
        "version": f"tensorflow {tf.__version__}",
        "signature": "serving_default",
        "converter": f"keras {keras.__version__} model.export(format='tf_saved_model') "
        "(ExportArchive)",
        "runtime": f"tensorflow {tf.__version__} (tf.saved_model.load)",
    }


def write_tflite(
    model, path: Path, quantize: str = "none", calibration: np.ndarray | None = None
) -> dict:
    """Write ``model`` as a TFLite flatbuffer to ``path`` (which must end in .tflite).

    Args:
        model: the Keras model.
        path: the output file.
        quantize: "none"; "float16" (weights stored as float16); "int8" (weights and
            activations int8, inputs and outputs still float32), calibrated on
            ``calibration``.
        calibration: uint8 images (n, h, w, c) for int8's representative dataset.
    """
    import keras
    import tensorflow as tf

    options: dict = {}
    if quantize in ("float16", "int8"):
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    if quantize == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 quantization needs calibration images")
        images = np.asarray(calibration[:CALIBRATION_IMAGES], dtype=np.float32)
        options["representative_dataset"] = lambda: ([x[None]] for x in images)
    with converter_output():
        model.export(str(path), format="litert", verbose=False, **options)
    record = {
        "version": f"tensorflow {tf.__version__}",
        "converter": f"tf.lite.TFLiteConverter (tensorflow {tf.__version__}) via keras "
        f"{keras.__version__} model.export(format='litert')",
        "runtime": f"ai-edge-litert {version('ai-edge-litert')}",
        "quantize": None if quantize == "none" else quantize,
    }
    if quantize == "int8":
        record["calibration_images"] = int(min(len(calibration), CALIBRATION_IMAGES))
    return record


def runner(fmt: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a float32 image batch to the exported model's output, run in the
    runtime the format is for."""
    if fmt == "onnx":
        return OnnxModel(path).predict_on_batch
    if fmt == "savedmodel":
        return _savedmodel_runner(path)
    if fmt == "tflite":
        return _tflite_runner(path)
    raise ValueError(f"format must be one of {FORMATS} (got {fmt!r})")


def _savedmodel_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    with converter_output():
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]

    def run(x: np.ndarray) -> np.ndarray:
        out = serve(**{name: tf.constant(np.asarray(x, dtype=np.float32))})
        return next(iter(out.values())).numpy()

    return run


def _tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    with converter_output():
        interpreter = Interpreter(model_path=str(path), num_threads=default_threads())
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    shape: list = [None]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if shape[0] != x.shape:  # the batch size is part of a TFLite tensor's shape
            with converter_output():  # LiteRT announces its CPU delegate on stderr here
                interpreter.resize_tensor_input(source, x.shape)
                interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    return run
