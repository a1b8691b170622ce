"""The head's decoding, found in the graph, kept in float by INT8 quantizers (issue 12).

A detector's last convolutions give raw box and class tensors; what follows them (sigmoid and
softmax, the distribution-focal-loss expectation, anchor and stride arithmetic, the
concatenation of pixel coordinates with probabilities) is cheap and the worst place for one
int8 scale: a Concat of 0..640 px boxes with 0..1 scores quantizes every score to 0. The
decoding is what lies between the graph's outputs and the last convolution (or matrix
product) of each branch, found by walking back from the outputs; a convolution fed by a
softmax is the DFL expectation (a fixed 0..15 kernel), part of the decoding, not a layer.
The walk is the same for every graph format (ONNX here, TFLite flatbuffers in
quantize/aeq.py); only the op vocabulary differs. Runs in worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpVocabulary:
    """What a graph format calls the ops the walk needs to tell apart."""
    layers: frozenset    # learned weights: where the walk back from the outputs stops
    moves: frozenset     # only move or reshape data: looked through when telling a DFL convolution
    softmax: frozenset


ONNX_OPS = OpVocabulary(
    layers=frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "ConvInteger", "MatMulInteger", "QLinearConv",
                      "QLinearMatMul"}),
    moves=frozenset({"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}),
    softmax=frozenset({"Softmax", "LogSoftmax"}))
TFLITE_OPS = OpVocabulary(
    layers=frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL",
                      "CONV_3D"}),
    moves=frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"}),
    softmax=frozenset({"SOFTMAX", "LOG_SOFTMAX"}))
MOVES = ONNX_OPS.moves


@dataclass(frozen=True)
class Op:
    """One node of a graph in any format: its name, op type and tensor names."""
    name: str
    op_type: str
    inputs: tuple
    outputs: tuple


def decoding(ops: list[Op], outputs: list[str], vocabulary: OpVocabulary) -> list[str]:
    """Names of the ops between the graph's `outputs` and the last layer of each branch, in
    graph order; a layer fed by a softmax (through data moves only) is the DFL expectation,
    part of the decoding."""
    producer = {out: op for op in ops for out in op.outputs}

    def fed_by_softmax(op: Op) -> bool:
        seen, todo = set(), list(op.inputs[:1])
        while todo:
            src = producer.get(todo.pop())
            if src is None or src.name in seen:
                continue
            seen.add(src.name)
            if src.op_type in vocabulary.softmax:
                return True
            if src.op_type in vocabulary.moves:
                todo.extend(src.inputs[:1])
        return False

    found: set[str] = set()
    todo = list(outputs)
    while todo:
        op = producer.get(todo.pop())
        if op is None or op.name in found:
            continue
        if op.op_type in vocabulary.layers and not fed_by_softmax(op):
            continue
        found.add(op.name)
        todo.extend(op.inputs)
    return [op.name for op in ops if op.name in found]


def decode_nodes(model) -> list[str]:
    """Names of an ONNX model's decoding nodes, in graph order (every node is named:
    ir/onnx_ir.name_nodes)."""
    graph = model.graph
    ops = [Op(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in graph.node]
    return decoding(ops, [o.name for o in graph.output], ONNX_OPS)


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
