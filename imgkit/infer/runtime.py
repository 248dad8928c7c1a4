"""Which engine runs a bundle's model: Keras (model.keras), ONNX Runtime (model.onnx, or
its int8 copy model.int8.onnx) or OpenVINO (openvino/, openvino-int8/).

predict, tta and segment call one method on ``bundle.model``: ``predict_on_batch(x)``
with a float32 (n, h, w, c) batch of 0-255 pixels. :class:`OnnxModel` offers that
method over an ONNX Runtime session (and
:class:`~imgkit.infer.openvino_model.OpenVinoModel` over an OpenVINO one), so choosing
a runtime (:func:`use_runtime`) swaps the object and nothing downstream changes: CSVs,
temperature, thresholds, streaming and masks are the same code.

An export is used only when ``imgkit export`` wrote and recorded it in imgkit.json
(its SHA-256 matches), with its check against Keras measured there: a model.onnx left
over from before ``train --overwrite``, or copied in by hand, is not taken for the
bundle's model. Loading one imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from imgkit.bundle import EXPORT_FILES, file_sha256
from imgkit.errors import BadBundleError, ImgkitError
from imgkit.infer.options import EXPORT_RUNTIMES, RUNTIMES

EXTRA_HINT = 'pip install -e ".[export]" (or pip install "imgkit[export]")'
OPENVINO_HINT = 'pip install -e ".[openvino]" (or pip install "imgkit[openvino]")'
# An export's format -> the module its runtime needs, and the extra that brings it.
_ENGINES = {
    "onnx": ("onnxruntime", f"export extra: {EXTRA_HINT}"),
    "openvino": ("openvino", f"openvino extra: {OPENVINO_HINT}"),
}


class MissingExtraError(ImgkitError):
    """An optional dependency (an extra: export, openvino, audit, ...) is not installed."""


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


def export_sha256(path: str | os.PathLike) -> str:
    """An export's SHA-256 as imgkit.json records it: a file's own; for a folder (an
    OpenVINO IR), the SHA-256 of its files' names and SHA-256s, in name order."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    lines = [
        f"{p.relative_to(path).as_posix()} {file_sha256(p)}\n"
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def export_problem(bundle, key: str) -> str | None:
    """Why ``bundle`` cannot run its export ``key`` (one of :data:`EXPORT_RUNTIMES`), in
    one line, or None when it can."""
    path = Path(bundle.path) / EXPORT_FILES[key]
    fmt, _, precision = key.partition("-")
    flags = " --quantize int8" if fmt == "onnx" and precision else ""
    if fmt == "openvino":
        flags = f" --precision {precision}" if precision else ""
    again = f"`imgkit export {bundle.path} --format {fmt}{flags}`"
    if not path.exists():
        return f"{bundle.path}: no {path.name} in the bundle (make one with {again})"
    record = (bundle.meta.get("exports") or {}).get(key)
    if not isinstance(record, dict) or record.get("sha256") != export_sha256(path):
        return (
            f"{path}: not the {'folder' if path.is_dir() else 'file'} `imgkit export` "
            f"recorded in imgkit.json (left from an earlier model, or replaced); export it "
            f"again with {again}"
        )
    module, hint = _ENGINES[fmt]
    if importlib.util.find_spec(module) is None:
        return f"--runtime {key} needs {module}, in the {hint}"
    return None


def load_export(bundle, key: str, threads: int | None = None, precision: str | None = None):
    """The bundle's export ``key`` loaded in its runtime (at ``precision``, default the one
    its export was checked at); no check of :func:`export_problem` here."""
    path = Path(bundle.path) / EXPORT_FILES[key]
    threads = threads or default_threads()
    if key.startswith("onnx"):
        return OnnxModel(path, threads)
    from imgkit.infer.openvino_model import OpenVinoModel

    record = (bundle.meta.get("exports") or {}).get(key) or {}
    try:
        return OpenVinoModel(path, precision or record.get("precision", "fp32"), threads)
    except ImportError as e:
        raise MissingExtraError(f"--runtime {key} needs the {_ENGINES['openvino'][1]}") from e


# `auto` takes a reduced-precision export only when its check kept at least this share
# of Keras's labels (mask pixels): within --max-drop on accuracy is not enough when the
# losses and gains cancel out over different images.
AUTO_MIN_AGREEMENT = 0.99


def agreement(bundle, key: str) -> float | None:
    """The share of labels (mask pixels) export ``key``'s check found equal to Keras's,
    or None when none was recorded."""
    parity = ((bundle.meta.get("exports") or {}).get(key) or {}).get("parity") or {}
    share = parity.get("labels_agreeing", parity.get("pixels_agreeing"))
    return float(share) if isinstance(share, (int, float)) else None


def _auto_may_take(bundle, key: str) -> bool:
    share = agreement(bundle, key)
    return export_problem(bundle, key) is None and (share is None or share >= AUTO_MIN_AGREEMENT)


def _speed(bundle, key: str) -> float:
    """The images/s recorded for export ``key`` when its check ran (0 when none was)."""
    record = (bundle.meta.get("exports") or {}).get(key) or {}
    speed = record.get("images_per_s")
    return float(speed) if isinstance(speed, (int, float)) else 0.0


def use_runtime(bundle, runtime: str = "auto", threads: int | None = None) -> str:
    """Choose the engine for ``bundle.model`` and set it up; return the runtime's name.

    Args:
        bundle: a loaded Bundle (an Ensemble: each member; then e.g. "keras+onnx" when
            members run on different engines).
        runtime: "keras"; one of :data:`EXPORT_RUNTIMES` (an error when the bundle has
            no usable export of that name or its runtime is missing); "auto": of the
            exports that can run and whose check kept at least 99% of Keras's labels
            (:data:`AUTO_MIN_AGREEMENT`), the one whose check recorded the most
            images/s (model.onnx first among equals), else Keras.
        threads: the runtime's intra-op threads (default :func:`default_threads`).

    Raises:
        BadBundleError: the named export is missing or not the recorded one.
        MissingExtraError: the named export's runtime is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES} (got {runtime!r})")
    members = getattr(bundle, "members", None)
    if members:  # an ensemble: each fold model on its own engine, averaged as they are
        return "+".join(sorted({use_runtime(m, runtime, threads) for m in members}))
    if runtime in EXPORT_RUNTIMES:
        problem = export_problem(bundle, runtime)
        if problem is not None:
            kind = MissingExtraError if "extra" in problem else BadBundleError
            raise kind(problem)
        bundle.model = load_export(bundle, runtime, threads)
        return runtime
    if runtime == "auto":
        usable = [k for k in EXPORT_RUNTIMES if _auto_may_take(bundle, k)]
        if usable:
            best = max(usable, key=lambda k: _speed(bundle, k))  # the first of equals
            bundle.model = load_export(bundle, best, threads)
            return best
    # Keras (and TensorFlow's C++ start-up notes) are imported here, quietly, before any
    # decoding thread starts; model.keras itself is loaded on first use.
    from imgkit.backend import import_keras_quietly

    import_keras_quietly()
    return "keras"


def open_bundle(
    folder: str | os.PathLike,
    task: str | tuple[str, ...] | None = None,
    trust: bool | None = None,
    runtime: str = "auto",
):
    """:func:`imgkit.bundle.load_bundle`, then :func:`use_runtime`: a bundle ready to run."""
    from imgkit.bundle import load_bundle

    bundle = load_bundle(folder, task=task, trust=trust)
    use_runtime(bundle, runtime)
    return bundle
