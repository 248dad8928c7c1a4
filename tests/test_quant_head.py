"""int8 exports leave a classifier's head (global pooling and after) in float32.

The head is found from the graph (:mod:`imgkit.export.head`); these tests check that it
is found where it is, not found where there is none, and that the int8 files ONNX
Runtime and NNCF write really leave it unquantized while the convolutions are not.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_module
from PIL import Image

from imgkit.export.head import onnx_head_nodes


def _graph(nodes):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_graph([helper.make_node(*n[:3], name=n[3]) for n in nodes], "g", [x], [y])


def test_the_head_is_what_follows_the_last_global_pooling():
    need_module("onnx", "needs the export extra (onnx)")
    # A squeeze-and-excitation pooling inside the backbone, then the classifier's own.
    graph = _graph(
        [
            ("Conv", ["x", "w1"], ["c1"], "conv1"),
            ("GlobalAveragePool", ["c1"], ["se"], "se_pool"),
            ("Mul", ["c1", "se"], ["scaled"], "se_scale"),
            ("Conv", ["scaled", "w2"], ["c2"], "conv2"),
            ("GlobalAveragePool", ["c2"], ["pooled"], "features"),
            ("Flatten", ["pooled"], ["flat"], "flatten"),
            ("Gemm", ["flat", "w3", "b3"], ["logits"], "dense"),
            ("Softmax", ["logits"], ["y"], "probs"),
        ]
    )
    assert onnx_head_nodes(graph) == ["features", "flatten", "dense", "probs"]


def test_no_head_where_a_convolution_follows_the_pooling():
    need_module("onnx", "needs the export extra (onnx)")
    # A decoder after an attention pooling (segmentation): keeping it float32 would
    # keep most of the network there.
    graph = _graph(
        [
            ("Conv", ["x", "w1"], ["c1"], "conv1"),
            ("GlobalAveragePool", ["c1"], ["se"], "se_pool"),
            ("Mul", ["c1", "se"], ["scaled"], "se_scale"),
            ("Conv", ["scaled", "w2"], ["y"], "decoder"),
        ]
    )
    assert onnx_head_nodes(graph) == []
    assert onnx_head_nodes(_graph([("Conv", ["x", "w1"], ["y"], "conv1")])) == []


@pytest.fixture(scope="module")
def small_cnn_onnx(tmp_path_factory):
    """A small convolutional classifier with a two-layer head, as model.onnx, and real
    photographs (scikit-image's, cropped) to calibrate it on."""
    need_module("tf2onnx", "needs the export extra (tf2onnx)")
    need_module("onnxruntime", "needs the export extra (onnxruntime)")
    data = pytest.importorskip("skimage.data", reason="needs scikit-image (the dev extra)")
    import keras

    from imgkit.export.formats import write_onnx

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dense(8, activation="relu", name="head_dense")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs)
    model.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32))  # Keras exports called models
    path = tmp_path_factory.mktemp("cnn") / "model.onnx"
    write_onnx(model, path)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    crops = [
        np.asarray(Image.fromarray(p).resize((96, 96)))[y : y + 32, x : x + 32]
        for p in photos
        for y in (0, 32, 64)
        for x in (0, 64)
    ]
    return path, np.stack(crops)


def _onnx_int8_inputs(path):
    """{node name: the op types that produce its inputs} of an ONNX file."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return {
        node.name: (node.op_type, [producer.get(name, "initializer") for name in node.input])
        for node in graph.node
    }


def _openvino_int8_inputs(folder):
    """{op friendly name: (its type, the types of the ops that produce its inputs, seen
    through the layout changes NNCF moves its FakeQuantize ops past)}."""
    import openvino as ov

    def producer(value) -> str:
        node = value.get_node()
        while node.get_type_name() in ("Transpose", "Reshape", "Squeeze", "Unsqueeze"):
            node = node.input_value(0).get_node()
        return node.get_type_name()

    model = ov.Core().read_model(str(folder / "model.xml"))
    return {
        op.get_friendly_name(): (op.get_type_name(), [producer(v) for v in op.input_values()])
        for op in model.get_ordered_ops()
    }


@pytest.mark.tensorflow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_int8_exports_keep_the_head_in_float32(small_cnn_onnx, tmp_path, runtime, monkeypatch):
    from imgkit.export.reduced import write_onnx_int8, write_openvino

    source, calibration = small_cnn_onnx
    if runtime == "onnx":
        record = write_onnx_int8(source, tmp_path / "model.int8.onnx", calibration)
        ops = _onnx_int8_inputs(tmp_path / "model.int8.onnx")
        quantized, matmuls, convs = "DequantizeLinear", ("MatMul", "Gemm"), ("Conv",)
    else:
        need_module("openvino", "needs the openvino extra")
        nncf = need_module("nncf", "needs the openvino extra (nncf)")
        calls = []
        real = nncf.quantize
        monkeypatch.setattr(nncf, "quantize", lambda *a, **k: calls.append(k) or real(*a, **k))
        record = write_openvino(source, tmp_path, "int8", calibration)
        # NNCF's full bias correction, not its fast default (it halved the labels changed).
        assert calls[0]["fast_bias_correction"] is False
        ops = _openvino_int8_inputs(tmp_path)
        quantized, matmuls, convs = "FakeQuantize", ("MatMul",), ("Convolution",)
    head = [name for name in record["float32_head"] if ops.get(name, ("",))[0] in matmuls]
    assert len(head) == 2, record["float32_head"]  # head_dense and probs
    for name in head:
        assert quantized not in ops[name][1], (name, ops[name])
    # ... while the backbone is int8: every convolution reads quantized tensors.
    conv_inputs = [inputs for kind, inputs in ops.values() if kind in convs]
    assert len(conv_inputs) == 2 and all(quantized in inputs for inputs in conv_inputs), ops
