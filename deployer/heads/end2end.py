"""`end2end`: models that output finished detections, NMS included: boxes (1, K, 4), scores
(1, K), classes (1, K) and optionally a count (1,) or (1, 1) of the valid rows (the TF
Object Detection API's `detection_boxes/detection_scores/detection_classes/num_detections`,
ONNX graphs ending in NonMaxSuppression).

Decoding keeps the valid rows above the score threshold; no NMS of deployer's own, so
parity compares what the model itself decided.
"""

from __future__ import annotations

import numpy as np

from deployer.errors import UserError
from deployer.heads.base import HeadType, output_check
from deployer.options import Option
from deployer.parity.detection import Detections


def _validate(params: dict, outputs: list[str], labels: list[str]):
    return output_check(params, outputs, labels, "boxes", "scores", "classes", "count")


def _complete(params: dict, shapes: dict, labels: list[str], lowered: dict) -> dict:
    # A recipe that lowered the model end to end knows how its outputs read (a two-stage
    # model's score floor): its fields win.
    declared = {o.name for o in HEAD.fields}
    params = {**params, **{k: v for k, v in (lowered.get("head") or {}).items() if k in declared}}
    boxes, scores, classes = (list(shapes[params[k]]) for k in ("boxes", "scores", "classes"))
    if len(boxes) != 3 or boxes[2] != 4:
        raise UserError(f"head.boxes '{params['boxes']}' has shape {boxes}: an end2end head needs (1, K, 4)")
    for key, shape in (("scores", scores), ("classes", classes)):
        if [d for d in shape if d != 1] != [d for d in boxes[:2] if d != 1]:
            raise UserError(f"head.{key} '{params[key]}' has shape {shape}: expected (1, {boxes[1]}) like the boxes")
    return params


def _rows(array: np.ndarray, n: int) -> np.ndarray:
    return array.reshape(n, -1)


def _decode(outputs: dict[str, np.ndarray], spec, score_threshold: float) -> list[Detections]:
    p = spec.head.params
    boxes = outputs[p["boxes"]].astype(np.float32)
    n = len(boxes)
    boxes = boxes.reshape(n, -1, 4)
    scores = _rows(outputs[p["scores"]], n).astype(np.float32)
    classes = np.rint(_rows(outputs[p["classes"]], n)).astype(np.int64) - p["class_offset"]
    counts = (_rows(outputs[p["count"]], n)[:, 0].astype(np.int64) if p.get("count")
              else np.full(n, boxes.shape[1]))
    if p["box_format"] == "yxyx":
        boxes = boxes[..., [1, 0, 3, 2]]
    if p["normalized"]:
        inp = spec.inputs[0]
        boxes = boxes * np.array([inp.width, inp.height, inp.width, inp.height], np.float32)
    dets = []
    for b, s, c, k in zip(boxes, scores, classes, counts):
        k = int(np.clip(k, 0, len(s)))
        keep = (s[:k] >= score_threshold) & (c[:k] >= 0)
        order = np.argsort(-s[:k][keep], kind="stable")[:spec.head.max_detections]
        dets.append(Detections(b[:k][keep][order], s[:k][keep][order], c[:k][keep][order]))
    return dets


def _graph(g, params: dict, spec):
    """The boxes and per-class scores the model's own NonMaxSuppression takes, as the other
    heads' decodings give them (xyxy in input pixels): NMS in the graph then replaces the
    model's own (tf2onnx's rendering of TF's CombinedNonMaxSuppression, which onnx2tf and
    coremltools cannot take), its outputs in deployer's layout (0-based classes)."""
    nms = g.model_nms(getattr(spec, "path", "") or "the spec")
    boxes = g.op("Reshape", nms.input[0], g.const([1, -1, 4]))
    if any(a.name == "center_point_box" and a.i == 1 for a in nms.attribute):
        boxes = g.cxcywh_to_xyxy(boxes)
    if params["box_format"] == "yxyx":
        boxes = g.op("Gather", boxes, g.const([1, 0, 3, 2]), axis=2)
    if params["normalized"]:
        inp = spec.inputs[0]
        boxes = g.op("Mul", boxes, g.const(np.array([inp.width, inp.height, inp.width, inp.height], np.float32)))
    return boxes, g.op("Transpose", nms.input[1], perm=[0, 2, 1])


HEAD = HeadType(
    name="end2end",
    fields=(Option("boxes", str, ..., "the name of the boxes output (1, K, 4)"),
            Option("scores", str, ..., "the name of the scores output (1, K)"),
            Option("classes", str, ..., "the name of the class-index output (1, K)"),
            Option("count", str, "", "the name of the valid-detections count output (1,), if any"),
            Option("box_format", str, "xyxy", "box coordinate order", choices=("xyxy", "yxyx")),
            Option("normalized", bool, False, "boxes in 0..1 of the input size (TF Object Detection API)"),
            Option("class_offset", int, 0, "subtracted from the class outputs (1 for 1-based label maps)"),
            Option("score_floor", float, 0.0, "the score below which the model drops detections (its NMS score "
                   "threshold): the reference's labelled mAP is measured down to the same floor"),
            Option("graph_nms", bool, False, "set by deployer: NMS added to the graph by [head] nms = 'graph'"),
            Option("best_class", bool, False, "the model's NMS keeps each box under its best class only (Vision's): "
                   "the reference's detections are compared the same way")),
    validate=_validate, decode=_decode, complete=_complete, graph=_graph,
    summary="finished detections: boxes, scores, classes (and a count) after the model's own NMS")
