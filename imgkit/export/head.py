"""The classifier head of an exported graph: what int8 quantization leaves in float32.

A classifier's head (global pooling, then a few Dense layers on one feature vector) is a
rounding error of its cost, but it is where quantization errors are summed into the
logits: every pooled feature feeds every unit, so a per-tensor 8-bit grid on the pooled
vector and the Dense weights moves each probability by the sum of 1,280 small errors.
Keeping it in float32 costs almost no speed and keeps the labels of images near the
decision threshold (the images int8 flips) where float32 puts them.

The head is found from the graph alone, the same way for ONNX and OpenVINO: the last
global pooling node in topological order and every node downstream of it, provided none
of them is a convolution (a segmentation network's decoder, or a pooling inside a
squeeze-and-excitation block with no head after it, is not a head: nothing is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

# Global pooling ops (ONNX names; OpenVINO converts GlobalAveragePool to ReduceMean).
_ONNX_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"})
_OPENVINO_POOLS = frozenset({"ReduceMean", "ReduceMax"})
# Ops that make a subgraph spatial, so not a classifier head.
_ONNX_CONVS = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"})
_OPENVINO_CONVS = frozenset(
    {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData"}
)


def _downstream(
    nodes: Sequence,
    kind: Callable,
    consumers: Callable,
    key: Callable[..., Hashable],
    pools: frozenset,
    convs: frozenset,
) -> list:
    """The last pooling node of ``nodes`` (topologically ordered) and all it feeds, in
    order; [] when there is none or a convolution is among them. ``key`` tells nodes
    apart (OpenVINO hands out a new Python object for a node at each look-up)."""
    last = max((i for i, node in enumerate(nodes) if kind(node) in pools), default=None)
    if last is None:
        return []
    seen = set()
    todo = [nodes[last]]
    found = []
    while todo:
        node = todo.pop()
        if key(node) in seen:
            continue
        seen.add(key(node))
        found.append(node)
        todo.extend(consumers(node))
    if any(kind(node) in convs for node in found):
        return []
    order = {key(node): i for i, node in enumerate(nodes)}
    return sorted(found, key=lambda node: order.get(key(node), len(nodes)))


def onnx_head_nodes(graph) -> list[str]:
    """Names of an ONNX graph's classifier head nodes (see the module's docstring)."""
    nodes = list(graph.node)
    readers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def consumers(node) -> Iterable:
        return [reader for out in node.output for reader in readers.get(out, [])]

    head = _downstream(nodes, lambda n: n.op_type, consumers, id, _ONNX_POOLS, _ONNX_CONVS)
    return [node.name for node in head]


def openvino_head_ops(model) -> list[str]:
    """Friendly names of an OpenVINO model's classifier head ops, its Result ops left out
    (see the module's docstring)."""
    ops = list(model.get_ordered_ops())

    def consumers(op) -> Iterable:
        return [
            target.get_node() for output in op.outputs() for target in output.get_target_inputs()
        ]

    head = _downstream(
        ops,
        lambda op: op.get_type_name(),
        consumers,
        lambda op: op.get_name(),  # unique in a model, unlike a friendly name
        _OPENVINO_POOLS,
        _OPENVINO_CONVS,
    )
    return [op.get_friendly_name() for op in head if op.get_type_name() != "Result"]
