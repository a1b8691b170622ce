"""Every intermediate tensor of an ONNX graph, by name: the float reference of per-layer
reports (quantize/sensitivity.py) and the ONNX backend's own probe.

Worker-side (imports onnx and onnxruntime).
"""

from __future__ import annotations

import numpy as np


def expose_all(model):
    """A copy of an ONNX model with every typed float intermediate tensor as a graph output."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    have = {o.name for o in model.graph.output}
    produced = {o for node in model.graph.node for o in node.output}
    for vi in model.graph.value_info:
        if vi.name in produced and vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(vi)
    return model


def _session(model):
    """(an ONNX Runtime session of a model from expose_all, its output names)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Keep every tensor as the graph computes it: no fusion may hide an exposed tensor.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session, [o.name for o in session.get_outputs()]


def run_exposed(model, feeds: list[dict]) -> dict[str, np.ndarray]:
    """Run a model (from expose_all) on each feed; every output stacked over the feeds, except
    those whose shape changes with the input (after an NMS: nothing to compare element-wise)."""
    session, names = _session(model)
    runs = [session.run(names, f) for f in feeds]
    return {n: np.stack([r[i] for r in runs]) for i, n in enumerate(names)
            if len({r[i].shape for r in runs}) == 1}


def max_abs_exposed(model, feeds) -> dict[str, float]:
    """The largest magnitude of every output of a model (from expose_all) over the feeds, kept
    as a running maximum: no tensor of every sample held at once."""
    session, names = _session(model)
    top: dict[str, float] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            if value.size and np.issubdtype(value.dtype, np.floating):
                top[name] = max(top.get(name, 0.0), float(np.abs(value).max()))
    return top
