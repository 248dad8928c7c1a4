"""Reduced-precision exports: an int8 copy of model.onnx, and OpenVINO IRs.

Both start from the float32 ONNX file :func:`imgkit.export.formats.write_onnx` wrote
(the graph Keras's TensorFlow backend traced), so every runtime runs the same graph:

- ``onnx-int8``: ONNX Runtime's static post-training quantization, QDQ format, weights
  int8 per output channel, activations uint8 with ranges calibrated on real images
  (the u8s8 pairing ONNX Runtime runs fastest on x86, with VNNI where the CPU has it),
  the graph's channels equalized before and the biases corrected after
  (:mod:`imgkit.export.ort_int8`).
- ``openvino``: the ONNX converted by OpenVINO's own ``convert_model`` and saved with
  float32 weights; bf16 is a precision OpenVINO runs it at (where the CPU has
  AVX512-BF16 or AMX), not another file.
- ``openvino-int8``: that IR quantized by NNCF (OpenVINO's post-training quantization
  tool), calibrated on real images.

Each writer returns what imgkit.json records about the export; OpenVINO, NNCF and ONNX
Runtime are imported inside the functions that use them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from imgkit.export import ort_int8
from imgkit.export.formats import converter_output, version
from imgkit.export.head import onnx_head_nodes, openvino_head_ops
from imgkit.infer.openvino_model import IR_FILE, cpu_has_bf16
from imgkit.infer.runtime import OPENVINO_HINT, MissingExtraError

PRECISIONS = ("auto", "fp32", "bf16", "int8")
# Calibration images per ONNX Runtime call: a small batch, so memory stays flat.
_CALIBRATION_BATCH = 8


def require_openvino(precision: str) -> None:
    """Check, before any work, that OpenVINO (and NNCF for int8) are installed.

    Raises:
        MissingExtraError: one line naming what is missing and how to install it.
    """
    needs = ("openvino", "nncf") if precision == "int8" else ("openvino",)
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"imgkit export --format openvino needs the openvino extra "
            f"({', '.join(missing)} not installed): {OPENVINO_HINT}"
        )


def resolve_precision(precision: str) -> tuple[str, str]:
    """``precision`` with "auto" made concrete, and a note saying why.

    "auto" is bf16 where OpenVINO can run it on this CPU, else fp32.
    """
    if precision != "auto":
        return precision, f"precision {precision}"
    if cpu_has_bf16():
        return "bf16", "precision bf16 (this CPU runs bf16; --precision fp32 for full precision)"
    return "fp32", "precision fp32 (this CPU has no bf16: neither AVX512-BF16 nor AMX)"


def _float_images(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images, dtype=np.float32)


def write_onnx_int8(
    source: Path, path: Path, calibration: np.ndarray, keep_head: bool = True
) -> dict:
    """Quantize the float32 ONNX file ``source`` to an int8 QDQ file ``path``.

    Args:
        source: model.onnx (float32).
        path: the int8 file to write.
        calibration: uint8 images (n, h, w, c) the activation ranges are measured on.
        keep_head: leave a classifier's head (global pooling and after) in float32
            (:mod:`imgkit.export.head`).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
        raise ValueError("int8 quantization needs calibration images")
    name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    images = _float_images(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(images), _CALIBRATION_BATCH))

        def get_next(self):
            start = next(self.batches, None)
            if start is None:
                return None
            return {name: images[start : start + _CALIBRATION_BATCH]}

    with converter_output(), tempfile.TemporaryDirectory(prefix="imgkit-") as work:
        # ONNX Runtime's own pre-processing first: it folds the batch normalizations
        # tf2onnx leaves after depthwise convolutions into them, so each is quantized
        # per channel with its scale, not per tensor before it (on MobileNetV2 the
        # probabilities moved 0.27 on average without it, 0.10 with it).
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        model = onnx.load(str(prepared))
        # Per-tensor activation grids wipe out the narrow channels of MobileNetV2's
        # early layers: on a fine-tuned 224 px bundle int8 lost 1.90 points and changed
        # 14 of 420 val labels without these two steps, gained 0.24 and changed 1 with
        # them; on a weaker one -14.52 points and 87 labels became -0.24 and 5
        # (docs/benchmarks.md). Neither step costs anything at run time.
        equalized = ort_int8.equalize_channels(model, images)
        onnx.save(model, str(prepared))
        head = onnx_head_nodes(model.graph) if keep_head else []
        quantized = Path(work) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=head,
        )
        result = onnx.load(str(quantized))
        corrected = ort_int8.correct_biases(model, result, images)
        onnx.save(result, str(path))
    return {
        "precision": "int8",
        "quantizer": f"onnxruntime {version('onnxruntime')} quant_pre_process and "
        "quantize_static (QDQ, per-channel int8 weights, uint8 activations, MinMax), "
        f"{equalized} tensors' channels equalized before, {corrected} biases corrected after",
        "calibration_images": len(images),
        "float32_head": head,
        "runtime": f"onnxruntime {version('onnxruntime')}",
    }


def write_openvino(
    source: Path,
    folder: Path,
    precision: str,
    calibration: np.ndarray | None = None,
    keep_head: bool = True,
) -> dict:
    """Convert the float32 ONNX file ``source`` to an OpenVINO IR in ``folder``.

    Args:
        source: model.onnx (float32).
        folder: an empty folder; model.xml and model.bin are written into it.
        precision: "fp32" or "bf16" (the same float32 IR, run at that precision), or
            "int8" (quantized by NNCF, calibrated on ``calibration``).
        calibration: uint8 images (n, h, w, c), for int8.
        keep_head: int8: leave a classifier's head (global pooling and after) in
            float32 (:mod:`imgkit.export.head`).
    """
    import openvino as ov

    with converter_output():
        model = ov.convert_model(str(source))
    record = {
        "precision": precision,
        "converter": f"openvino {ov.__version__} convert_model (from the ONNX export)",
        "runtime": f"openvino {ov.__version__} (CPU)",
    }
    if precision == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 quantization needs calibration images")
        import nncf

        images = _float_images(calibration)
        dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
        head = openvino_head_ops(model) if keep_head else []
        with converter_output():
            # Full bias correction, not NNCF's fast default: it corrects each layer's
            # bias for the shift int8 rounding leaves in its outputs, measured with the
            # layers before it already quantized, so errors do not pile up with depth.
            # On a fine-tuned MobileNetV2 at 224 px it took the labels changed from 30
            # of 420 to 8 (docs/benchmarks.md), for twice the export time.
            # The mixed preset quantizes activations asymmetrically: the inputs scaled
            # to [-1, 1] and the linear bottlenecks' outputs are not centred on zero,
            # so a symmetric grid wastes levels on values that never occur. On a
            # well-trained MobileNetV2 it took the labels changed from 5 of 420 to 1,
            # for about 7% of int8's speed.
            model = nncf.quantize(
                model,
                dataset,
                preset=nncf.QuantizationPreset.MIXED,
                subset_size=len(images),
                fast_bias_correction=False,
                ignored_scope=nncf.IgnoredScope(names=head),
            )
        record["quantizer"] = (
            f"nncf {version('nncf')} quantize (mixed preset: asymmetric activations; "
            "full bias correction)"
        )
        record["calibration_images"] = len(images)
        record["float32_head"] = head
    with converter_output():
        ov.save_model(model, str(Path(folder) / IR_FILE), compress_to_fp16=False)
    return record
