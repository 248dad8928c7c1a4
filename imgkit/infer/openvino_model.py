"""An OpenVINO IR (model.xml and model.bin) with the one method inference calls on a model.

``imgkit export --format openvino`` writes the IR into a folder of the bundle
(``openvino/``, or ``openvino-int8/`` for a quantized copy); :class:`OpenVinoModel`
compiles it for the CPU at the precision its export was checked at. Importing this
module imports nothing heavy: OpenVINO is loaded when a model is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgkit.errors import BadBundleError

IR_FILE = "model.xml"
# imgkit's precision -> OpenVINO's INFERENCE_PRECISION_HINT. An int8 IR carries its own
# int8 layers; what it left in floating point runs in f32, as it was checked.
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 here (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoModel:
    """An IR compiled for the CPU, run one batch at a time.

    Args:
        folder: the folder holding model.xml and model.bin.
        precision: "fp32", "bf16" or "int8" (:data:`HINTS`).
        threads: inference threads (all of them: one batch at a time, as ONNX Runtime).

    Raises:
        ImportError: OpenVINO is not installed.
        BadBundleError: the IR cannot be read or compiled.
    """

    def __init__(self, folder: str | os.PathLike, precision: str, threads: int):
        import openvino as ov

        if precision not in HINTS:
            raise ValueError(f"precision must be one of {tuple(HINTS)} (got {precision!r})")
        path = Path(folder) / IR_FILE
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            # One request at a time, every thread on it: what a batch loop wants.
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError with C++ text; one line here
            raise BadBundleError(f"{path}: OpenVINO cannot load it ({e})") from e
        self.request = self.compiled.create_infer_request()
        self.path = path
        self.precision = precision

    def predict_on_batch(self, x) -> np.ndarray:
        """The model's first output for a batch, as numpy."""
        self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def __repr__(self) -> str:
        return f"OpenVinoModel({str(self.path)!r}, precision={self.precision!r})"
