"""Per-layer error of a quantized (or half-precision) artifact against the float ONNX graph.

Both models are run on the same inputs with every intermediate tensor exposed; each tensor
gets its SQNR in dB against the float one (10*log10(sum(ref^2)/sum((ref-out)^2))). A node's
own damage is how far it pushes SQNR down from the worst of its inputs: that ranks the
layers to keep in float, and the first tensor below a threshold says where accuracy
starts to go. Tensors are matched by their ONNX names, so this works for ONNX artifacts
(QDQ keeps the float tensors' names) and OpenVINO IR (which keeps ONNX tensor names).
Worker stage (imports onnx, onnxruntime, openvino).
"""

from __future__ import annotations

import math

import numpy as np

from deployer.spec import ModelSpec


def _expose_all(model):
    """A copy of an ONNX model with every typed float intermediate tensor as a graph output."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    have = {o.name for o in model.graph.output}
    produced = {o for node in model.graph.node for o in node.output}
    for vi in model.graph.value_info:
        if vi.name in produced and vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(vi)
    return model


def _run_onnx(model, feeds: list[dict]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Keep every tensor as the graph computes it: no fusion may hide an exposed tensor.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(names, f) for f in feeds]
    return {n: np.stack([r[i] for r in runs]) for i, n in enumerate(names)}


def _run_openvino(path: str, wanted: set[str], feeds: list[dict]) -> dict[str, np.ndarray]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    ports = {}
    for op in model.get_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result", "FakeQuantize", "Convert"):
            continue
        for out in op.outputs():
            names = out.get_names() & wanted
            if names:
                ports[next(iter(names))] = out
    model.add_outputs(list(ports.values()))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    lookup = {}
    for out in compiled.outputs:
        for n in out.get_names():
            if n in ports:
                lookup[n] = out
    collected = {n: [] for n in lookup}
    for f in feeds:
        result = request.infer(f)
        for n, port in lookup.items():
            collected[n].append(np.asarray(result[port]).copy())
    return {n: np.stack(v) for n, v in collected.items()}


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.astype(np.float64).ravel()
    noise = float(((ref - out.astype(np.float64).ravel()) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def layer_errors(float_onnx: str, artifact: str, backend: str, spec: dict, inputs: str, count: int = 16) -> list[dict]:
    """Per node of the float graph, in graph order: its output tensor's SQNR and its own drop."""
    import onnx

    spec = ModelSpec.from_dict(spec)
    data = np.load(inputs)
    feeds = [{i.name: data[i.name][k] for i in spec.inputs} for k in range(min(count, len(data[spec.inputs[0].name])))]
    float_model = _expose_all(onnx.load(float_onnx))
    reference = _run_onnx(float_model, feeds)
    if backend == "onnx":
        raw = _run_onnx(_expose_all(onnx.load(artifact)), feeds)
        # In a QDQ graph the value consumers see is the DequantizeLinear output (the float
        # tensor of the same name can be, e.g., a Conv output before its fused ReLU).
        measured = {n: raw.get(f"{n}_DequantizeLinear_Output", raw.get(n)) for n in reference
                    if f"{n}_DequantizeLinear_Output" in raw or n in raw}
    elif backend == "openvino":
        measured = _run_openvino(artifact, set(reference), feeds)
    else:
        raise ValueError(f"per-layer errors are not available for backend '{backend}'")
    sqnr = {name: sqnr_db(reference[name], measured[name]) for name in reference
            if name in measured and measured[name].shape == reference[name].shape}
    graph_inputs = {i.name for i in float_model.graph.input}
    producer = {o: node for node in float_model.graph.node for o in node.output}
    effective: dict[str, float] = {}   # a tensor's SQNR, or where unmeasured, its producer's inputs'
    chain: dict[str, list[str]] = {}   # the unmeasured nodes folded into a measured one (Conv before its ReLU)

    def worst_input(node) -> tuple[float, list[str]]:
        value, folded = math.inf, []
        for i in node.input:
            if i in graph_inputs or i not in producer:
                continue  # graph inputs and weights are exact
            if i in effective:
                value = min(value, effective[i])
                if i not in sqnr:
                    folded += chain.get(i, [])
        return value, folded

    rows = []
    for node in float_model.graph.node:
        worst_in, folded = worst_input(node)
        outs = [o for o in node.output if o in sqnr]
        if not outs:
            for o in node.output:
                effective[o] = worst_in
                chain[o] = folded + [node.name]
            continue
        out_sqnr = min(sqnr[o] for o in outs)
        for o in node.output:
            effective[o] = sqnr.get(o, out_sqnr)
        drop = worst_in - out_sqnr if math.isfinite(worst_in) else (-out_sqnr if math.isfinite(out_sqnr) else 0.0)
        if not math.isfinite(worst_in) and math.isfinite(out_sqnr):
            drop = 100.0 - out_sqnr if out_sqnr < 100 else 0.0  # first lossy layer after exact inputs
        rows.append({"node": node.name, "op": node.op_type, "tensor": outs[0], "nodes": folded + [node.name],
                     "sqnr_db": _finite(out_sqnr), "input_sqnr_db": _finite(worst_in), "drop_db": _finite(drop)})
    return rows


def _finite(x: float) -> float | None:
    """JSON has no infinity: an exact match (infinite SQNR) is written as null."""
    return x if math.isfinite(x) else None


def rank_for_fallback(rows: list[dict], already: list[str]) -> list[list[str]]:
    """Groups of node names to keep in float, most damaging first; each group is one measured
    layer with the unmeasured nodes folded into it (a Conv fused with its ReLU)."""
    ranked = sorted((r for r in rows if r["node"] not in already and (r["drop_db"] or 0) > 0),
                    key=lambda r: r["drop_db"], reverse=True)
    return [r["nodes"] for r in ranked]


def first_below(rows: list[dict], threshold_db: float) -> dict | None:
    """The first tensor, in graph order, whose SQNR falls below the threshold."""
    return next((r for r in rows if r["sqnr_db"] is not None and r["sqnr_db"] < threshold_db), None)
