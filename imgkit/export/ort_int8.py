"""What ONNX Runtime's static int8 quantization lacks, done on the ONNX graph itself.

ONNX Runtime quantizes every activation tensor per tensor: one 8-bit grid for all its
channels. MobileNetV2's ImageNet weights (which a fine-tuned bundle keeps in its early
layers) have tensors whose channels span ranges 100 times apart, fed to convolutions
with large weights (batch normalizations folded in over channels of tiny variance): on
a 224 px MobileNetV2 the stem's output has one channel peaking at 0.03 where the tensor
reaches 3.3, and one channel of block 1's expansion multiplies its input by 127, so the
rounding noise of the channels before it comes out 12 dB louder than the signal. The
probabilities then move by 0.05 on average and the labels near the threshold flip.
OpenVINO's NNCF does not suffer this: it quantizes a depthwise convolution's input per
channel and corrects each layer's bias for the shift rounding leaves. Both are done here
in ways an ONNX graph can carry:

- :func:`equalize_channels`, before quantizing: the float32 graph is changed, keeping
  its function, so that the channels of a tensor span the same range. A channel
  feeding a depthwise convolution through a ReLU (or ReLU6) is scaled up by the
  convolution before it and down by the depthwise one, each channel by its own factor
  (cross-layer equalization, Nagel et al. 2019, "Data-free quantization"); a channel
  passed straight from one convolution to a 1x1 convolution (a linear bottleneck) is
  also centred on zero, its mean moved into the next convolution's bias.
  Weights are quantized per output channel, so neither scaling costs them precision.
- :func:`correct_biases`, after: each quantized convolution's int32 bias is moved by
  the mean shift its output shows against the float32 graph on the calibration
  images, convolution by convolution in graph order, with the ones before it already
  corrected (so that shifts do not pile up with depth).
"""

from __future__ import annotations

import numpy as np

# ONNX Runtime runs images through the graph in batches this small, so memory stays flat.
_BATCH = 8
# A channel whose calibrated range is below this share of its tensor's is left alone
# (a dead channel has nothing to scale up).
_DEAD = 1e-6
# The largest factor a channel is scaled up by: the next convolution's weights shrink by
# as much, and its int32 bias, quantized with the weights' scale, must not overflow.
# (On MobileNetV2 the largest needed was 139.)
_MAX_SCALE = 1000.0


def _attr(node, name: str, default):
    from onnx import helper

    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else default


def _consumers(graph) -> dict[str, list]:
    found: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _session(model, outputs: list[str], optimize: bool = True):
    """An ONNX Runtime session computing ``outputs`` of ``model`` and only what they need."""
    import onnx
    import onnxruntime as ort

    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    producer = {out: node for node in pruned.graph.node for out in node.output}
    needed, todo = set(), list(outputs)
    while todo:
        node = producer.get(todo.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            todo.extend(node.input)
    kept = [node for node in pruned.graph.node if id(node) in needed]
    del pruned.graph.node[:]
    pruned.graph.node.extend(kept)
    del pruned.graph.output[:]
    pruned.graph.output.extend([onnx.ValueInfoProto(name=name) for name in outputs])
    options = ort.SessionOptions()
    options.log_severity_level = 3  # unused initializers are expected, not news
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(
        pruned.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _channel_stats(model, tensors: list[str], images: np.ndarray, optimize: bool = True):
    """Per channel (axis 1) of each of ``tensors``: minimum, maximum and mean over ``images``."""
    session = _session(model, tensors, optimize)
    name = model.graph.input[0].name
    low, high, total = {}, {}, {}
    for start in range(0, len(images), _BATCH):
        batch = images[start : start + _BATCH]
        for tensor, value in zip(tensors, session.run(tensors, {name: batch}), strict=True):
            axes = tuple(i for i in range(value.ndim) if i != 1)
            value = value.astype(np.float64)
            low[tensor] = np.minimum(low.get(tensor, np.inf), value.min(axis=axes))
            high[tensor] = np.maximum(high.get(tensor, -np.inf), value.max(axis=axes))
            total[tensor] = total.get(tensor, 0) + value.mean(axis=axes) * len(batch)
    return {t: (low[t], high[t], total[t] / len(images)) for t in tensors}


class _Weights:
    """A graph's initializers as float64 arrays, written back on :meth:`put`."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self._numpy = numpy_helper
        self._protos = {init.name: init for init in graph.initializer}
        uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        self._uses = uses

    def own(self, node, count: int) -> bool:
        """Whether ``node``'s inputs 1..count-1 are initializers no other node reads."""
        names = node.input[1:count]
        return len(names) == count - 1 and all(
            self.constant(n) and self._uses.get(n) == 1 for n in names
        )

    def constant(self, name: str) -> bool:
        return name in self._protos

    def get(self, name: str) -> np.ndarray:
        return self._numpy.to_array(self._protos[name]).astype(np.float64)

    def put(self, name: str, value: np.ndarray) -> None:
        self._protos[name].CopyFrom(self._numpy.from_array(value.astype(np.float32), name))


def _is_relu(node, weights: _Weights) -> bool:
    """ReLU, or a Clip from exactly 0 (ReLU6): scaling by s > 0 passes through it."""
    if node.op_type == "Relu":
        return True
    if node.op_type != "Clip" or len(node.input) < 2 or not weights.constant(node.input[1]):
        return False
    return float(weights.get(node.input[1])) == 0.0


def _pairs(graph, weights: _Weights):
    """The (conv, relu, depthwise conv) and (conv, 1x1 conv) chains equalization may change.

    Every link is the only reader of the one before, and every weight and bias is used by
    its convolution alone, so changing them changes nothing else.
    """
    producer = {out: node for node in graph.node for out in node.output}
    readers = _consumers(graph)
    outputs = {out.name for out in graph.output}

    def sole(tensor: str) -> bool:
        return len(readers.get(tensor, [])) == 1 and tensor not in outputs

    def plain_conv(node) -> bool:
        return node is not None and node.op_type == "Conv" and weights.own(node, 3)

    depthwise, linear = [], []
    for conv in graph.node:
        if not plain_conv(conv):
            continue
        before = producer.get(conv.input[0])
        group = _attr(conv, "group", 1)
        shape = weights.get(conv.input[1]).shape
        if group > 1 and shape[:2] == (group, 1) and before is not None and sole(conv.input[0]):
            first = producer.get(before.input[0]) if _is_relu(before, weights) else None
            if plain_conv(first) and _attr(first, "group", 1) == 1 and sole(first.output[0]):
                depthwise.append((first, before, conv))
        elif (
            group == 1
            and shape[2:] == (1, 1)
            and not any(_attr(conv, "pads", [0]))
            and _attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
            and plain_conv(before)
            and _attr(before, "group", 1) == 1
            and sole(before.output[0])
        ):
            linear.append((before, conv))
    return depthwise, linear


def equalize_channels(model, images: np.ndarray) -> int:
    """Equalize ``model``'s channel ranges in place (see the module's docstring).

    Args:
        model: a float32 ``onnx.ModelProto`` whose first input takes ``images``.
        images: float32 calibration images, as the model takes them.

    Returns:
        How many tensors were equalized.

    The float32 function is kept exactly, but for one case: a ReLU6's cap of 6 applies
    to the scaled channel, so a channel scaled up by s is capped at 6 / s of its own
    units, beyond its largest calibrated value; the int8 copy caps it at that value
    anyway (its grid ends there), as a per-channel grid would.
    """
    graph = model.graph
    weights = _Weights(graph)
    depthwise, linear = _pairs(graph, weights)
    tensors = [relu.output[0] for _, relu, _ in depthwise] + [a.output[0] for a, _ in linear]
    if not tensors:
        return 0
    stats = _channel_stats(model, tensors, images)

    def scaled(width: np.ndarray) -> np.ndarray:
        alive = width > _DEAD * width.max()
        ratio = np.minimum(width.max() / np.where(alive, width, 1.0), _MAX_SCALE)
        return np.where(alive, ratio, 1.0)

    for first, relu, conv in depthwise:
        scale = scaled(stats[relu.output[0]][1])
        _scale_outputs(weights, first, scale)
        weight = weights.get(conv.input[1])
        weights.put(conv.input[1], weight / scale.reshape(-1, *[1] * (weight.ndim - 1)))
    for first, conv in linear:
        low, high, _ = stats[first.output[0]]
        centre, scale = (low + high) / 2, scaled((high - low) / 2)
        # y' = s * (y - centre) and W y + b = (W / s) y' + (W centre + b): the same output.
        weight = weights.get(conv.input[1])
        weights.put(conv.input[2], weights.get(conv.input[2]) + weight[:, :, 0, 0] @ centre)
        weights.put(conv.input[1], weight / scale.reshape(1, -1, 1, 1))
        weights.put(first.input[2], weights.get(first.input[2]) - centre)
        _scale_outputs(weights, first, scale)
    return len(tensors)


def _scale_outputs(weights: _Weights, conv, scale: np.ndarray) -> None:
    weight = weights.get(conv.input[1])
    weights.put(conv.input[1], weight * scale.reshape(-1, *[1] * (weight.ndim - 1)))
    weights.put(conv.input[2], weights.get(conv.input[2]) * scale)


def correct_biases(reference, quantized, images: np.ndarray) -> int:
    """Move each quantized convolution's bias by its output's mean shift, in place.

    Args:
        reference: the float32 ``onnx.ModelProto`` ``quantized`` was made from.
        quantized: its QDQ copy (ONNX Runtime's ``quantize_static``), whose convolutions
            read int32 biases through DequantizeLinear; their node names are the
            reference's.
        images: float32 calibration images, as the models take them.

    Returns:
        How many biases were corrected.
    """
    from onnx import numpy_helper

    float_convs = {n.name: n for n in reference.graph.node if n.op_type == "Conv"}
    producer = {out: node for node in quantized.graph.node for out in node.output}
    protos = {init.name: init for init in quantized.graph.initializer}
    convs = []
    for node in quantized.graph.node:
        dequantize = producer.get(node.input[2]) if len(node.input) > 2 else None
        if (
            node.op_type == "Conv"
            and node.name in float_convs
            and dequantize is not None
            and dequantize.op_type == "DequantizeLinear"
            and dequantize.input[0] in protos
            and dequantize.input[1] in protos
        ):
            convs.append((node, dequantize))
    if not convs:
        return 0
    wanted = [float_convs[node.name].output[0] for node, _ in convs]
    means = {t: s[2] for t, s in _channel_stats(reference, wanted, images).items()}
    for (node, dequantize), target in zip(convs, wanted, strict=True):
        # The convolution's own output, before its QuantizeLinear: what the bias adds to.
        shift = _channel_stats(quantized, [node.output[0]], images)[node.output[0]][2]
        shift = shift - means[target]
        scale = numpy_helper.to_array(protos[dequantize.input[1]]).astype(np.float64)
        bias = numpy_helper.to_array(protos[dequantize.input[0]]).astype(np.int64)
        moved = np.clip(bias - np.round(shift / scale), -(2**31), 2**31 - 1).astype(np.int32)
        protos[dequantize.input[0]].CopyFrom(numpy_helper.from_array(moved, dequantize.input[0]))
    return len(convs)
