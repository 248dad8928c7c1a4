"""Channel equalization and bias correction for ONNX Runtime int8 (imgkit.export.ort_int8).

The graphs are tiny MobileNetV2-like chains built with onnx.helper: a convolution whose
channels span ranges 100 times apart, a ReLU6, a depthwise convolution, a linear
bottleneck with one channel far off zero, and a 1x1 expansion reading it.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the export extra (onnx)")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from imgkit.export import ort_int8  # noqa: E402

_RELU = "relu"  # the ReLU6 output feeding the depthwise convolution
_BOTTLENECK = "bottleneck"  # the linear bottleneck feeding the 1x1 expansion


def _chain(seed: int = 0):
    rng = np.random.default_rng(seed)
    stem = rng.normal(0, 0.3, (4, 3, 3, 3))
    stem[1] *= 0.01  # a channel 100 times narrower than the others
    depthwise = rng.normal(0, 0.5, (4, 1, 3, 3))
    depthwise[1] *= 60  # ... read with large weights, as a folded batch norm leaves it
    project = rng.normal(0, 0.5, (5, 4, 1, 1))
    project_bias = np.array([0.0, 0.0, 5.0, 0.0, 0.0])  # a channel far off zero
    expand = rng.normal(0, 0.5, (6, 5, 1, 1))
    expand[:, 2] *= 40
    weights = {
        "stem_w": stem,
        "stem_b": rng.normal(0, 0.1, 4),
        "dw_w": depthwise,
        "dw_b": rng.normal(0, 0.1, 4),
        "proj_w": project,
        "proj_b": project_bias,
        "exp_w": expand,
        "exp_b": rng.normal(0, 0.1, 6),
        "low": np.array(0.0),
        "high": np.array(6.0),
    }
    nodes = [
        helper.make_node("Conv", ["x", "stem_w", "stem_b"], ["stem"], "stem", pads=[1] * 4),
        helper.make_node("Clip", ["stem", "low", "high"], [_RELU], "relu6"),
        helper.make_node(
            "Conv", [_RELU, "dw_w", "dw_b"], ["dw"], "depthwise", group=4, pads=[1] * 4
        ),
        helper.make_node("Conv", ["dw", "proj_w", "proj_b"], [_BOTTLENECK], "project"),
        helper.make_node("Conv", [_BOTTLENECK, "exp_w", "exp_b"], ["y"], "expand"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def _images(seed: int, n: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)


def _run(model, x: np.ndarray, outputs=("y",)) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=o) for o in outputs if o not in known])
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(list(outputs), {"x": x})


def _quantized(model, images: np.ndarray, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([images])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"x": batch}

    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(model, str(source))
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True)  # fmt: skip
    return onnx.load(str(target))


def _sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((reference - other) ** 2).sum()))


def test_equalization_keeps_the_function_and_evens_the_channels():
    model, calibration, held_out = _chain(), _images(1), _images(2)
    before = _run(model, held_out)[0]
    assert ort_int8.equalize_channels(model, calibration) == 2
    after, relu, bottleneck = _run(model, calibration, ("y", _RELU, _BOTTLENECK))
    # Calibration images: the ReLU6 cap never bites, so the function is the same.
    assert np.allclose(_run(model, held_out)[0], before, rtol=1e-4, atol=1e-4)
    peaks = relu.max(axis=(0, 2, 3))
    assert peaks.min() == pytest.approx(peaks.max(), rel=1e-4)
    low, high = bottleneck.min(axis=(0, 2, 3)), bottleneck.max(axis=(0, 2, 3))
    assert np.allclose(low + high, 0, atol=1e-4)  # centred on zero
    assert np.allclose(high, high.max(), rtol=1e-4)  # and as wide as each other
    assert np.isfinite(after).all()


def test_equalization_leaves_shared_tensors_and_offset_clips_alone():
    model = _chain()
    model.graph.output.extend([onnx.ValueInfoProto(name=_BOTTLENECK)])  # read twice now
    clip_low = next(i for i in model.graph.initializer if i.name == "low")
    clip_low.CopyFrom(numpy_helper.from_array(np.array(-1.0, np.float32), "low"))
    weights = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    assert ort_int8.equalize_channels(model, _images(1)) == 0
    for init in model.graph.initializer:
        assert np.array_equal(numpy_helper.to_array(init), weights[init.name])


def test_equalized_and_corrected_int8_is_closer_to_float(tmp_path):
    calibration, held_out = _images(1, 32), _images(2, 32)
    reference = _run(_chain(), held_out, ("dw", "y"))
    plain = _run(_quantized(_chain(), calibration, tmp_path), held_out, ("dw", "y"))

    model = _chain()
    ort_int8.equalize_channels(model, calibration)
    quantized = _quantized(model, calibration, tmp_path)
    equalized = _run(quantized, held_out, ("dw", "y"))
    # The depthwise output no longer carries the narrow channel's amplified noise.
    assert _sqnr(reference[0], equalized[0]) > _sqnr(reference[0], plain[0]) + 10
    assert _sqnr(reference[1], equalized[1]) > _sqnr(reference[1], plain[1]) + 3

    convs = [n.output[0] for n in quantized.graph.node if n.op_type == "Conv"]
    float_convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]

    def shifts() -> np.ndarray:
        q, f = _run(quantized, calibration, convs), _run(model, calibration, float_convs)
        pairs = zip(q, f, strict=True)
        return np.array([np.abs((a - b).mean(axis=(0, 2, 3))).max() for a, b in pairs])

    before = shifts()
    assert ort_int8.correct_biases(model, quantized, calibration) == 4
    assert (shifts() < 0.5 * before).all()
    corrected = _run(quantized, held_out, ("dw", "y"))
    assert _sqnr(reference[1], corrected[1]) > _sqnr(reference[1], equalized[1])
