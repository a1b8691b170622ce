"""Per-layer error of a quantized (or half-precision) artifact against the float ONNX graph.

Both models are run on the same inputs with every intermediate tensor exposed; each tensor
gets its SQNR in dB against the float one (10*log10(sum(ref^2)/sum((ref-out)^2))). A node's
own damage is how far it pushes SQNR down from the worst of its inputs: that ranks the
layers to keep in float, and the first tensor below a threshold says where accuracy
starts to go. Tensors are matched by their ONNX names, so this works for backends whose
artifacts keep them and that declare a probe (`Backend.layer_outputs`: ONNX QDQ keeps
the float tensors' names, OpenVINO IR keeps ONNX tensor names).
Worker stage (imports onnx, onnxruntime and the backend's runtime).
"""

from __future__ import annotations

import numpy as np

from deployer import backends
from deployer.ir.probe import expose_all, run_exposed
from deployer.parity.tensor import SNR_EXACT_DB, tensor_snr_db
from deployer.registry import resolve
from deployer.spec import ModelSpec

# The first lossy layer after exact inputs is charged its loss below this (a float layer
# computes to ~120 dB at best, so a drop to 40 dB there costs 60 dB, like a drop elsewhere).
FIRST_LAYER_REF_DB = 100.0


def layer_errors(float_onnx: str, artifact: str, backend: str, spec: dict, inputs: str, count: int = 16) -> list[dict]:
    """Per node of the float graph, in graph order: its output tensor's SQNR and its own drop."""
    import onnx

    spec = ModelSpec.from_dict(spec)
    data = np.load(inputs)
    feeds = [{i.name: data[i.name][k] for i in spec.inputs} for k in range(min(count, len(data[spec.inputs[0].name])))]
    float_model = expose_all(onnx.load(float_onnx))
    reference = run_exposed(float_model, feeds)
    probe = backends.get(backend).layer_outputs
    if probe is None:
        raise ValueError(f"per-layer errors are not available for backend '{backend}'")
    measured = resolve(probe)(artifact, set(reference), feeds)
    sqnr = {name: tensor_snr_db(reference[name], measured[name]) for name in reference
            if name in measured and measured[name].shape == reference[name].shape}
    graph_inputs = {i.name for i in float_model.graph.input}
    producer = {o: node for node in float_model.graph.node for o in node.output}
    effective: dict[str, float] = {}   # a tensor's SQNR, or where unmeasured, its producer's inputs'
    chain: dict[str, list[str]] = {}   # the unmeasured nodes folded into a measured one (Conv before its ReLU)

    def worst_input(node) -> tuple[float, list[str]]:
        value, folded = SNR_EXACT_DB, []
        for i in node.input:
            if i in graph_inputs or i not in producer:
                continue  # graph inputs and weights are exact
            if i in effective:
                value = min(value, effective[i])
                if i not in sqnr:
                    folded += chain.get(i, [])
        return value, folded

    from deployer.quantize.head_float import decode_nodes

    head = set(decode_nodes(float_model))
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
        if worst_in >= SNR_EXACT_DB:   # exact inputs: the first lossy layer
            drop = max(0.0, FIRST_LAYER_REF_DB - out_sqnr)
        else:
            drop = worst_in - out_sqnr
        rows.append({"node": node.name, "op": node.op_type, "tensor": outs[0], "nodes": folded + [node.name],
                     "sqnr_db": out_sqnr, "input_sqnr_db": worst_in, "drop_db": drop, "head": node.name in head})
    return rows


def rank_for_fallback(rows: list[dict], already: list[str], collapsed: bool = False) -> list[list[str]]:
    """Groups of node names to keep in float, most damaging first; each group is one measured
    layer with the unmeasured nodes folded into it (a Conv fused with its ReLU). When an output
    collapsed (its cosine or SNR near 0), the head's decoding between it and the last layers
    comes first, as one group: a single int8 scale there (pixels concatenated with
    probabilities) wipes an output out whatever the layers before it do."""
    ranked = sorted((r for r in rows if r["node"] not in already and r["drop_db"] > 0),
                    key=lambda r: r["drop_db"], reverse=True)
    groups = [[n for n in r["nodes"] if n] for r in ranked]
    if collapsed:
        head = [n for r in rows if r.get("head") for n in r["nodes"] if n and n not in already]
        groups = ([head] if head else []) + [g for g in groups if not set(g) <= set(head)]
    return [g for g in groups if g]


def first_below(rows: list[dict], threshold_db: float) -> dict | None:
    """The first tensor, in graph order, whose SQNR falls below the threshold."""
    return next((r for r in rows if r["sqnr_db"] < threshold_db), None)
