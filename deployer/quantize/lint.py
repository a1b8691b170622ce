"""INT8 lint: patterns of an ONNX graph that int8 quantization handles badly, found before
calibration, each named with its node and what deployer does about it (issue 12).

Static checks read the graph: outputs that concatenate coordinates with probabilities,
padding with a non-zero constant, large max-pool windows, activations that quantize badly.
With sample inputs (the calibration images of a build), a concatenation of tensors whose
ranges differ by more than RANGE_RATIO is reported too: one int8 scale for both wipes out
the small one. Worker stage (imports onnx and onnxruntime).
"""

from __future__ import annotations

import numpy as np

from deployer.quantize.head_float import MOVES as HEAD_MOVES

RANGE_RATIO = 100.0
MAXPOOL_WINDOW = 7          # larger windows: one outlier sets the scale of a wide neighbourhood
# Activations whose int8 rendering loses much (steep or unbounded curves, or lookup tables a
# runtime lacks); with a note of why.
BAD_ACTIVATIONS = {
    "Exp": "unbounded output", "Log": "steep near 0", "Softplus": "unbounded output",
    "Mish": "no int8 kernel in most runtimes", "Gelu": "no int8 kernel in most runtimes",
    "Erf": "no int8 kernel in most runtimes", "Pow": "range grows with the exponent", "Sqrt": "steep near 0",
    "Reciprocal": "unbounded near 0", "Div": "unbounded near 0 of the divisor",
}
PROBABILITIES = {"Sigmoid", "Softmax", "HardSigmoid"}
# Data movement a probability passes through unchanged in meaning (slices of it included).
MOVES = HEAD_MOVES | {"Slice", "Split", "Gather"}


def _finding(node, issue: str, action: str) -> dict:
    return {"node": node.name, "op": node.op_type, "issue": issue, "action": action}


def _action(node_name: str, head: set[str]) -> str:
    if node_name in head:
        return "kept in float: part of the head's decoding (options.quantize_head = true would quantize it)"
    return "the accuracy-aware fallback keeps it in float if the artifact misses its thresholds"


def lint_graph(model, head: set[str]) -> list[dict]:
    """The static findings of a model (nodes named: ir/onnx_ir.name_nodes)."""
    from onnx import numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        for a in n.attribute:
            if n.op_type == "Constant" and a.name == "value":
                consts[n.output[0]] = numpy_helper.to_array(a.t)

    def is_probability(tensor: str) -> bool:
        node = producer.get(tensor)
        while node is not None and node.op_type in MOVES:
            node = producer.get(node.input[0])
        return node is not None and node.op_type in PROBABILITIES

    found = []
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Concat":
            kinds = {is_probability(i) for i in node.input if i not in consts}
            if kinds == {True, False} and _reaches_output(node, consumers, outputs):
                found.append(_finding(node, "concatenates probabilities (0..1) with other values (box coordinates) "
                                      "into an output: one int8 scale for both quantizes the probabilities to 0",
                                      _action(node.name, head)))
        elif node.op_type == "Pad":
            mode = attrs["mode"].s.decode() if "mode" in attrs else "constant"
            value = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if mode == "constant" and value is not None and np.any(np.asarray(value) != 0):
                found.append(_finding(node, f"pads with the constant {np.asarray(value).ravel()[0]:g}: the padding "
                                      "must be exactly representable in the input's int8 scale",
                                      _action(node.name, head)))
        elif node.op_type == "MaxPool" and "kernel_shape" in attrs:
            kernel = list(attrs["kernel_shape"].ints)
            if max(kernel) > MAXPOOL_WINDOW:
                found.append(_finding(node, f"max-pool window {kernel}: one outlier sets a wide neighbourhood",
                                      _action(node.name, head)))
        elif node.op_type == "Div" and (len(node.input) < 2 or node.input[1] in consts):
            continue   # by a constant: a scale, exact enough
        elif node.op_type in BAD_ACTIVATIONS:
            found.append(_finding(node, f"{node.op_type}: {BAD_ACTIVATIONS[node.op_type]}", _action(node.name, head)))
    return found


def _reaches_output(node, consumers: dict[str, list], outputs: set[str]) -> bool:
    """Whether `node`'s result is a graph output or reaches one through data movement only."""
    todo, seen = list(node.output), set()
    while todo:
        t = todo.pop()
        if t in outputs:
            return True
        for c in consumers.get(t, []):
            if c.name not in seen and c.op_type in MOVES:
                seen.add(c.name)
                todo.extend(c.output)
    return False


def lint_ranges(model, feeds: list[dict], head: set[str]) -> list[dict]:
    """Concatenations whose inputs' ranges (max |x| on the sample inputs) differ by more than
    RANGE_RATIO."""
    from deployer.ir.probe import expose_all, max_abs_exposed

    top = max_abs_exposed(expose_all(model), feeds)
    found = []
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        ranges = [top[i] for i in node.input if i in top]
        ranges = [r for r in ranges if r > 0]
        if len(ranges) >= 2 and max(ranges) / min(ranges) > RANGE_RATIO:
            found.append(_finding(node, f"concatenates tensors whose ranges differ {max(ranges) / min(ranges):.0f}x "
                                  f"({min(ranges):.3g} to {max(ranges):.3g}): one int8 scale for both flattens the "
                                  "small one", _action(node.name, head)))
    return found


def lint(onnx_path: str, inputs: str = "", names: list[str] | None = None, count: int = 8) -> list[dict]:
    """Worker stage: the findings for an ONNX file; with `inputs` (an .npz of (n, ...) arrays
    under the model's input names), the range checks on `count` samples too."""
    import onnx

    from deployer.ir.onnx_ir import name_nodes
    from deployer.quantize.head_float import decode_nodes

    model = onnx.load(onnx_path)
    name_nodes(model)
    head = set(decode_nodes(model))
    found = lint_graph(model, head)
    if inputs:
        data = np.load(inputs)
        keys = names or [i.name for i in model.graph.input if i.name in data]
        n = min(count, len(data[keys[0]]))
        feeds = [{k: data[k][j] for k in keys} for j in range(n)]
        seen = {f["node"] for f in found}   # one finding per node: the graph's reason says enough
        found += [f for f in lint_ranges(model, feeds, head) if f["node"] not in seen]
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(found, key=lambda f: order.get(f["node"], 0))


COVERAGE_MARGIN = 0.2   # evaluation ranges more than 20% beyond calibration's are reported


def coverage(onnx_path: str, calibration: str, evaluation: str, names: list[str],
             margin: float = COVERAGE_MARGIN) -> dict:
    """Worker stage: does the calibration set cover what the model sees at evaluation? The
    largest magnitude of every float tensor over every calibration and evaluation input; the
    layers where evaluation exceeds calibration by more than `margin` (their int8 range, set
    on calibration, clips there), worst first."""
    import onnx

    from deployer.ir.onnx_ir import name_nodes
    from deployer.ir.probe import expose_all, max_abs_exposed

    model = onnx.load(onnx_path)
    name_nodes(model)
    exposed = expose_all(model)
    ranges, counts = [], []
    for path in (calibration, evaluation):
        data = np.load(path)
        n = len(data[names[0]])
        ranges.append(max_abs_exposed(exposed, ({k: data[k][j] for k in names} for j in range(n))))
        counts.append(n)
    calib, evals = ranges
    producer = {o: n for n in model.graph.node for o in n.output}
    beyond = []
    for tensor, seen in evals.items():
        top = calib.get(tensor, 0.0)
        if tensor in producer and seen > (1 + margin) * top and seen > 1e-6:
            node = producer[tensor]
            beyond.append({"node": node.name, "op": node.op_type, "tensor": tensor, "calibration_max": top,
                           "evaluation_max": seen, "ratio": seen / top if top else float("inf")})
    beyond.sort(key=lambda r: -r["ratio"])
    return {"tensors": len(evals), "margin": margin, "calibration_images": counts[0], "evaluation_images": counts[1],
            "beyond": beyond[:10], "beyond_count": len(beyond)}
