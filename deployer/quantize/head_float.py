"""The head's decoding, found in the graph, kept in float by INT8 quantizers (issue 12).

A detector's last convolutions give raw box and class tensors; what follows them (sigmoid and
softmax, the distribution-focal-loss expectation, anchor and stride arithmetic, the
concatenation of pixel coordinates with probabilities) is cheap and the worst place for one
int8 scale: a Concat of 0..640 px boxes with 0..1 scores quantizes every score to 0. The
decoding is what lies between the graph's outputs and the last convolution (or matrix
product) of each branch, found by walking back from the outputs; a convolution fed by a
softmax is the DFL expectation (a fixed 0..15 kernel), part of the decoding, not a layer.
Runs in worker processes (imports onnx when asked).
"""

from __future__ import annotations

# Ops that are layers (learned weights): where the walk back from the outputs stops.
LAYERS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
# Ops that only move or reshape data: looked through when telling a DFL convolution.
MOVES = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}


def decode_nodes(model) -> list[str]:
    """Names of the nodes between the graph's outputs and the last layer of each branch, in
    graph order (every node is named: ir/onnx_ir.name_nodes)."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def fed_by_softmax(node) -> bool:
        seen, todo = set(), list(node.input[:1])
        while todo:
            src = producer.get(todo.pop())
            if src is None or src.name in seen:
                continue
            seen.add(src.name)
            if src.op_type in ("Softmax", "LogSoftmax"):
                return True
            if src.op_type in MOVES:
                todo.extend(src.input[:1])
        return False

    found: set[str] = set()
    todo = [o.name for o in graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in found:
            continue
        if node.op_type in LAYERS and not fed_by_softmax(node):
            continue
        found.add(node.name)
        todo.extend(node.input)
    return [n.name for n in graph.node if n.name in found]


def head_exclusions(onnx_path: str, options: dict) -> tuple[list[str], list[str]]:
    """(node names to keep in float: the profile's `exclude` plus the decoding unless
    `quantize_head`, the decoding's own names) for an INT8 build of `onnx_path`."""
    import onnx

    exclude = list(options.get("exclude", []))
    if options.get("quantize_head", False):
        return exclude, []
    decoding = decode_nodes(onnx.load(onnx_path, load_external_data=False))
    return exclude + [n for n in decoding if n not in exclude], decoding


def head_note(decoding: list[str]) -> list[str]:
    if not decoding:
        return []
    return [f"head decoding kept in float ({len(decoding)} nodes after the last layers; "
            "options.quantize_head = true quantizes it)"]
