"""`yolo`: the one-output heads of the YOLO family, after their own decoding (boxes in input
pixels, cx cy w h) and before NMS:

- `v8`: Ultralytics YOLOv8/v11 (and v9/v10 one-to-many exports): (1, 4 + nc, N), class
  scores after sigmoid, no objectness; (1, N, 4 + nc) is read too (some exports transpose);
- `v5`: YOLOv5/v7: (1, N, 5 + nc), objectness in column 4, each class score multiplied
  by it as their own NMS does.

The layout is inferred from the output's shape and the number of labels when the spec does
not name it; candidates go through the same multi-label class-wise NMS as `boxes_scores`.
"""

from __future__ import annotations

import numpy as np

from deployer.errors import UserError
from deployer.heads.base import HeadType, output_check
from deployer.options import Option
from deployer.parity.detection import Detections, decode_boxes_scores

EXTRA = {"v8": 4, "v5": 5}   # columns before the class scores


def _validate(params: dict, outputs: list[str], labels: list[str]):
    return output_check(params, outputs, labels, "output")


def _orient(shape: list, layout: str, nc: int) -> bool | None:
    """True when the output is channels-first (1, extra + nc, N), False for rows (1, N, extra + nc)."""
    width = EXTRA[layout] + nc
    # v5/v7 exports are rows only; reading (1, 5 + nc, N) as v5 would mistake a v8 output
    # whose labels are one short for a v5 one.
    if layout == "v8" and shape[1] == width and shape[2] != width:
        return True
    if shape[2] == width:
        return False
    return None


def _complete(params: dict, shapes: dict, labels: list[str], lowered: dict) -> dict:
    name = params["output"]
    shape = list(shapes[name])
    nc = len(labels)
    where = f"head.output '{name}'"
    if len(shape) != 3:
        raise UserError(f"{where} has shape {shape}: a yolo head needs (1, 4 + classes, N) (v8) or "
                        f"(1, N, 5 + classes) (v5)")
    layouts = [params["layout"]] if params.get("layout") else ["v8", "v5"]
    for layout in layouts:
        channels_first = _orient(shape, layout, nc)
        if channels_first is not None:
            return {**params, "layout": layout, "channels_first": channels_first}
    wanted = " or ".join(f"{lo}: {EXTRA[lo]} + {nc} = {EXTRA[lo] + nc} columns" for lo in layouts)
    raise UserError(f"{where} has shape {shape}, which does not fit {len(labels)} labels ({wanted}); "
                    "check 'labels' (one name per class, in class order) and head.layout")


def split(output: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (n, N, 4) cxcywh, scores (n, N, nc)) of a batch of yolo outputs."""
    output = output.reshape(len(output), *output.shape[-2:])   # (n, 1, a, b) stacked runs -> (n, a, b)
    rows = np.swapaxes(output, 1, 2) if params["channels_first"] else output
    rows = rows.astype(np.float32)
    if params["layout"] == "v5":
        return rows[..., :4], rows[..., 5:] * rows[..., 4:5]
    return rows[..., :4], rows[..., 4:]


def _decode(outputs: dict[str, np.ndarray], spec, score_threshold: float) -> list[Detections]:
    head = spec.head
    boxes, scores = split(outputs[head.params["output"]], head.params)
    return [decode_boxes_scores(boxes[k], scores[k], "cxcywh", score_threshold, head.iou_threshold,
                                head.max_detections, head.params.get("best_class", False)) for k in range(len(boxes))]


def _graph(g, params: dict, spec):
    out = params["output"]
    rows = g.op("Transpose", out, perm=[0, 2, 1]) if params["channels_first"] else out
    boxes = g.cxcywh_to_xyxy(g.columns(rows, 0, 4))
    extra = EXTRA[params["layout"]]
    classes = g.columns(rows, extra, extra + len(spec.labels))
    return boxes, (g.op("Mul", classes, g.columns(rows, 4, 5)) if params["layout"] == "v5" else classes)


HEAD = HeadType(
    name="yolo",
    fields=(Option("output", str, ..., "the name of the YOLO output"),
            Option("layout", str, "", "the output layout (inferred from its shape when absent)",
                   choices=("", "v8", "v5")),
            Option("channels_first", bool, True, "set by deployer from the output's shape")),
    validate=_validate, decode=_decode, complete=_complete, graph=_graph,
    summary="one YOLO output: v8/v11 (1, 4 + nc, N) or v5/v7 (1, N, 5 + nc), boxes cx cy w h in input pixels")
