"""`boxes_scores`: a boxes output (1, N, 4) and a class-scores output (1, N, classes) after
sigmoid or softmax; multi-label candidates, class-wise NMS (parity/detection.py)."""

from __future__ import annotations

import numpy as np

from deployer.heads.base import HeadType, output_check
from deployer.options import Option
from deployer.parity.detection import Detections, decode_boxes_scores


def _validate(params: dict, outputs: list[str], labels: list[str]):
    return output_check(params, outputs, labels, "boxes", "scores")


def _decode(outputs: dict[str, np.ndarray], spec, score_threshold: float) -> list[Detections]:
    head = spec.head
    p = head.params
    boxes, scores = outputs[p["boxes"]], outputs[p["scores"]]
    return [decode_boxes_scores(boxes[k], scores[k], p["box_format"], score_threshold, head.iou_threshold,
                                head.max_detections, p.get("best_class", False)) for k in range(len(boxes))]


def _graph(g, params: dict, spec):
    boxes = g.op("Reshape", params["boxes"], g.const([1, -1, 4]))
    scores = g.op("Reshape", params["scores"], g.const([1, -1, len(spec.labels)]))
    return (g.cxcywh_to_xyxy(boxes) if params["box_format"] == "cxcywh" else boxes), scores


HEAD = HeadType(
    name="boxes_scores",
    fields=(Option("boxes", str, ..., "the name of the boxes output"),
            Option("scores", str, ..., "the name of the scores output"),
            Option("box_format", str, "xyxy", "box coordinates", choices=("xyxy", "cxcywh"))),
    validate=_validate, decode=_decode, graph=_graph,
    summary="boxes (1, N, 4) in input pixels and class scores (1, N, C); class-wise NMS")
