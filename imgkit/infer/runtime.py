"""Which engine runs a bundle's model: Keras (model.keras) or ONNX Runtime (model.onnx).

predict, tta and segment call one method on ``bundle.model``: ``predict_on_batch(x)``
with a float32 (n, h, w, c) batch of 0-255 pixels. :class:`OnnxModel` offers that
method over an ONNX Runtime session, so choosing a runtime (:func:`use_runtime`) swaps
the object and nothing downstream changes: CSVs, temperature, thresholds, streaming
and masks are the same code.

ONNX Runtime is used only for a model.onnx that ``imgkit export`` wrote and recorded
in imgkit.json (its SHA-256 matches), with its parity against Keras measured there: a
model.onnx left over from before ``train --overwrite``, or copied in by hand, is not
taken for the bundle's model. Loading it imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from imgkit.bundle import EXPORT_FILES, file_sha256
from imgkit.errors import BadBundleError, ImgkitError
from imgkit.infer.options import RUNTIMES

EXTRA_HINT = 'pip install -e ".[export]" (or pip install "imgkit[export]")'


class MissingExtraError(ImgkitError):
    """An optional dependency (the ``export`` extra) is not installed."""


def default_threads() -> int:
    """Intra-op threads for ONNX Runtime: OMP_NUM_THREADS when set (Ray sets it to an
    actor's CPUs), else the CPUs this process may run on (not the machine's, which a
    container or ``taskset`` may not grant)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class OnnxModel:
    """An ONNX Runtime session with the one method inference calls on a Keras model.

    Args:
        path: the .onnx file.
        threads: intra-op threads (default :func:`default_threads`).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingExtraError(f"ONNX Runtime needs the export extra: {EXTRA_HINT}") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        # One model call at a time: parallelism within an op is what helps a CNN.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only; its warnings are not the user's
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers or None
            )
        except Exception as e:  # ORT raises its own kinds; the user needs one line
            raise BadBundleError(f"{path}: ONNX Runtime cannot load it ({e})") from e
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def predict_on_batch(self, x) -> np.ndarray:
        """The model's first output for a batch, as numpy."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run(None, feed)[0]

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r})"


def onnx_problem(bundle) -> str | None:
    """Why ``bundle`` cannot run on ONNX Runtime, in one line, or None when it can."""
    path = Path(bundle.path) / EXPORT_FILES["onnx"]
    again = f"`imgkit export {bundle.path} --format onnx`"
    if not path.is_file():
        return f"{bundle.path}: no {path.name} in the bundle (make one with {again})"
    record = (bundle.meta.get("exports") or {}).get("onnx")
    if not isinstance(record, dict) or record.get("sha256") != file_sha256(path):
        return (
            f"{path}: not the file `imgkit export` recorded in imgkit.json (left from an "
            f"earlier model, or replaced); export it again with {again}"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        return f"--runtime onnx needs onnxruntime, in the export extra: {EXTRA_HINT}"
    return None


def use_runtime(bundle, runtime: str = "auto", threads: int | None = None) -> str:
    """Choose the engine for ``bundle.model`` and set it up; return "keras" or "onnx".

    Args:
        bundle: a loaded Bundle (an Ensemble: each member; then "keras+onnx" when
            some run on each).
        runtime: "keras"; "onnx" (an error when the bundle has no usable model.onnx or
            onnxruntime is missing); "auto": ONNX Runtime when it can, else Keras.
        threads: ONNX Runtime's intra-op threads (default :func:`default_threads`).

    Raises:
        BadBundleError: ``runtime="onnx"`` and the bundle has no recorded model.onnx.
        MissingExtraError: ``runtime="onnx"`` and onnxruntime is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES} (got {runtime!r})")
    members = getattr(bundle, "members", None)
    if members:  # an ensemble: each fold model on its own engine, averaged as they are
        return "+".join(sorted({use_runtime(m, runtime, threads) for m in members}))
    if runtime != "keras":
        problem = onnx_problem(bundle)
        if problem is None:
            bundle.model = OnnxModel(Path(bundle.path) / EXPORT_FILES["onnx"], threads)
            return "onnx"
        if runtime == "onnx":
            kind = MissingExtraError if "extra" in problem else BadBundleError
            raise kind(problem)
    # Keras (and TensorFlow's C++ start-up notes) are imported here, quietly, before any
    # decoding thread starts; model.keras itself is loaded on first use.
    from imgkit.backend import import_keras_quietly

    import_keras_quietly()
    return "keras"


def open_bundle(
    folder: str | os.PathLike,
    task: str | None = None,
    trust: bool | None = None,
    runtime: str = "auto",
):
    """:func:`imgkit.bundle.load_bundle`, then :func:`use_runtime`: a bundle ready to run."""
    from imgkit.bundle import load_bundle

    bundle = load_bundle(folder, task=task, trust=trust)
    use_runtime(bundle, runtime)
    return bundle
