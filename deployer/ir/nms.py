"""NMS in the graph ([head] nms = "graph"): the lowered model, its head's decoding as ONNX
nodes, and ONNX NonMaxSuppression, so an app gets finished detections from the artifact
alone. A worker stage (onnx family), made once per build and cached (graph_nms.py).

Two files are written:
- `decoded.onnx`: outputs `boxes` (1, N, 4) xyxy in input pixels and `scores` (1, N, labels),
  what a pipeline with its own NMS stage takes (CoreML: Vision's NonMaximumSuppression);
- `model_nms.onnx`: the same followed by class-wise NMS (every class a candidate for every
  box, as deployer's decoder does), the best `max_detections` overall by score, padded with
  zeros to a fixed shape: `detection_boxes` (1, K, 4), `detection_scores` (1, K),
  `detection_classes` (1, K) (0-based label index, float) and `num_detections` (1,).

Every added node's name starts with `deployer_nms/`: INT8 backends keep them in float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deployer.errors import UserError
from deployer.spec import ModelSpec

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
PREFIX = "deployer_nms/"


class Graph:
    """Adds nodes and constants to an ONNX graph under unique `deployer_nms/` names."""

    def __init__(self, model, opset: int):
        from onnx import helper, numpy_helper

        self.model, self.helper, self.numpy_helper, self.opset = model, helper, numpy_helper, opset
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0
        # A model that already went through here (an end2end model made by deployer) has names
        # of this form: new ones must not collide with them.
        graph = model.graph
        self.taken = ({n.name for n in graph.node} | {o for n in graph.node for o in n.output}
                      | {i.name for i in graph.initializer})

    def _name(self, what: str) -> str:
        while True:
            self.count += 1
            name = f"{PREFIX}{what}_{self.count}"
            if name not in self.taken and f"{name}:0" not in self.taken:
                return name

    def const(self, value) -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        name = self._name("const")
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def ops(self, op_type: str, inputs, outputs: int, **attrs) -> list[str]:
        name = self._name(op_type)
        outs = [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        return self.ops(op_type, inputs, 1, **attrs)[0]

    def model_nms(self, where: str):
        """The model's own NonMaxSuppression node (an end2end model's), the one NMS of its graph."""
        found = [n for n in self.model.graph.node if n.op_type == "NonMaxSuppression"]
        if len(found) != 1:
            raise UserError(f"{where}: field 'head.nms': NMS in the graph replaces an end2end model's own "
                            f"NonMaxSuppression, and its lowered graph has {len(found)} of them (it needs one)")
        return found[0]

    def axes_op(self, op_type: str, x: str, axes: list[int]) -> str:
        """Squeeze or Unsqueeze: axes an input from opset 13, an attribute before."""
        if self.opset >= 13:
            return self.op(op_type, x, self.const(axes))
        return self.op(op_type, x, axes=axes)

    def columns(self, x: str, start: int, end: int) -> str:
        """x[..., start:end] of a rank-3 tensor. Exact bounds: TF.js rejects onnx2tf's rendering
        of an open-ended slice."""
        return self.op("Slice", x, self.const([start]), self.const([end]), self.const([2]))

    def cxcywh_to_xyxy(self, boxes: str) -> str:
        centre, size = self.columns(boxes, 0, 2), self.columns(boxes, 2, 4)
        half = self.op("Mul", size, self.const(np.float32(0.5)))
        return self.op("Concat", self.op("Sub", centre, half), self.op("Add", centre, half), axis=2)


def _nms_tail(g: Graph, boxes: str, scores: str, spec: ModelSpec) -> list[str]:
    """Class-wise NMS, the best K by score, zero-padded to K rows."""
    head = spec.head
    k_max = g.const([head.max_detections])
    by_class = g.op("Transpose", scores, perm=[0, 2, 1])                       # (1, C, N)
    selected = g.op("NonMaxSuppression", boxes, by_class, k_max, g.const(np.array([head.iou_threshold], np.float32)),
                    g.const(np.array([head.score_threshold], np.float32)), center_point_box=0)   # (M, 3)
    picked = g.op("GatherND", by_class, selected)                              # (M,)
    if g.opset >= 12:
        k = g.op("Min", g.op("Shape", picked), k_max)
    else:   # Min takes integers from opset 12
        k = g.op("Cast", g.op("Min", g.op("Cast", g.op("Shape", picked), to=1), g.op("Cast", k_max, to=1)), to=7)
    top, order = g.ops("TopK", [picked, k], 2, axis=0, largest=1, sorted=1)
    rows = g.op("Gather", selected, order, axis=0)                             # (k, 3)
    box_index = g.op("Gather", rows, g.const(np.int64(2)), axis=1)
    label = g.op("Cast", g.op("Gather", rows, g.const(np.int64(1)), axis=1), to=1)
    top_boxes = g.op("Gather", g.axes_op("Squeeze", boxes, [0]), box_index, axis=0)   # (k, 4)
    # Converters may pad NMS's selection to a fixed size with (0, 0, 0) rows (onnx2tf does):
    # a row counts only when its score passes the threshold NMS applied, which every real
    # selection does, so the count and the zero rows mean the same in every runtime.
    threshold = g.const(np.array([head.score_threshold], np.float32))
    valid = g.op("Cast", g.op("Not", g.op("Less", top, threshold)), to=1)      # (k,) 1.0 or 0.0
    top = g.op("Mul", top, valid)
    label = g.op("Mul", label, valid)
    top_boxes = g.op("Mul", top_boxes, g.axes_op("Unsqueeze", valid, [1]))
    missing = g.op("Sub", k_max, k)
    zero = g.const([0])
    padded_boxes = g.op("Pad", top_boxes, g.op("Concat", zero, zero, missing, zero, axis=0))
    pads_1d = g.op("Concat", zero, missing, axis=0)
    K = head.max_detections
    return [g.op("Reshape", padded_boxes, g.const([1, K, 4])),
            g.op("Reshape", g.op("Pad", top, pads_1d), g.const([1, K])),
            g.op("Reshape", g.op("Pad", label, pads_1d), g.const([1, K])),
            g.op("ReduceSum", valid, keepdims=1)]


def _with_outputs(model, g: Graph, tensors: list[str], names: list[str], shapes: list[list]):
    """A copy of `model` with g's nodes and the given tensors as its only outputs (renamed
    through Identity nodes, so an app reads them by these names)."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    graph.node.extend(g.nodes)
    graph.initializer.extend(g.initializers)
    # The model's own tensors may already bear these names (a boxes_scores model's "boxes"):
    # they are renamed, so the finished outputs keep the names apps look for.
    taken = {t for node in graph.node for t in node.output}
    for name in set(names) & taken:
        _rename(graph, name, f"{name}:model")
    graph.node.extend(helper.make_node("Identity", [t], [n], name=f"{PREFIX}{n}") for t, n in zip(tensors, names))
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes))
    _prune(graph)
    return out


def _used_inside(node) -> set[str]:
    """Tensors a node's subgraphs (If, Loop bodies) read, outer-scope ones included."""
    used: set[str] = set()
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                used |= set(inner.input) | _used_inside(inner)
    return used


def _prune(graph) -> None:
    """Drop the nodes and initializers no output needs: the model's own outputs (and, for an
    end2end model, its own NMS rendering, which converters may not take) once replaced."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed |= set(node.input) | _used_inside(node)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if t == old else t for t in node.input]
        node.output[:] = [new if t == old else t for t in node.output]
    for value in graph.value_info:
        if value.name == old:
            value.name = new


def with_nms(model, spec) -> tuple:
    """(decoded model, model with NMS, names of the added nodes) of a loaded ONNX model; `spec`
    needs `head`, `labels` and `inputs` (a ModelSpec)."""
    from deployer.heads import registry as heads

    head_type = heads()[spec.head.type]
    where = getattr(spec, "path", "") or "the spec"
    if head_type.graph is None:
        raise UserError(f"{where}: field 'head.nms': head type '{head_type.name}' has no graph decoding")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:
        raise UserError(f"{where}: field 'source.opset': NMS in the graph needs opset 11 or later "
                        f"(the lowered model has {opset})")
    g = Graph(model, opset)
    boxes, scores = head_type.graph(g, spec.head.params, spec)
    decoded = _with_outputs(model, g, [boxes, scores], ["boxes", "scores"], [[1, None, 4], [1, None, len(spec.labels)]])
    tail = _nms_tail(g, boxes, scores, spec)
    K = spec.head.max_detections
    final = _with_outputs(model, g, tail, list(OUTPUTS), [[1, K, 4], [1, K], [1, K], [1]])
    return decoded, final, [node.name for node in g.nodes] + [f"{PREFIX}{n}" for n in OUTPUTS]


def append_nms(onnx_path: str, spec: dict, out_dir: str) -> dict:
    """Worker stage: write decoded.onnx and model_nms.onnx (module docstring); returns their
    outputs (name, shape) and the added nodes' names."""
    import onnx

    from deployer.ir.onnx_ir import set_metadata

    model_spec = ModelSpec.from_dict(spec)
    decoded, final, nodes = with_nms(onnx.load(onnx_path), model_spec)
    K = model_spec.head.max_detections
    set_metadata(final, {"deployer.nms": {"iou_threshold": model_spec.head.iou_threshold,
                                          "score_threshold": model_spec.head.score_threshold, "max_detections": K}})
    for proto, name in ((decoded, "decoded.onnx"), (final, "model_nms.onnx")):
        proto = onnx.shape_inference.infer_shapes(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(Path(out_dir) / name))
    return {"outputs": [{"name": name, "shape": shape} for name, shape in
                        zip(OUTPUTS, ([1, K, 4], [1, K], [1, K], [1]))], "nodes": nodes}
