"""`anchors`: anchor-based detectors whose graph ends before box decoding (SSD, SSDlite,
RetinaNet, FCOS, TFLite-style SSD): a box-regression output (1, N, 4), a class-logits output
(1, N, C) and N anchors (xyxy, input pixels) from a .npy file or from the frontend's recipe
(frontends/recipes/). Boxes are decoded with the box coder of torchvision and the TF Object
Detection API (`coder = "deltas"`: centre offsets scaled by the anchor size, log-size
deltas, each divided by its weight) or FCOS's linear one (`coder = "ltrb"`: distances from
the anchor's centre in units of its size); scores by the head's activation, times an
optional centerness output under a square root (FCOS); then the usual class-wise NMS.
"""

from __future__ import annotations

import math

import numpy as np

from deployer.errors import UserError
from deployer.heads.base import HeadType, output_check
from deployer.options import Option
from deployer.parity.detection import Detections, decode_boxes_scores

# torchvision's clamp of the log-size deltas: exp() of more overflows float16 and means nothing.
XFORM_CLIP = math.log(1000.0 / 16)


def _validate(params: dict, outputs: list[str], labels: list[str]):
    problem = output_check(params, outputs, labels, "deltas", "logits", "centerness")
    if problem:
        return problem
    weights = params["box_coder_weights"]
    if len(weights) != 4 or any(w <= 0 for w in weights):
        return "head.box_coder_weights", "four positive numbers (x, y, w, h)", weights
    return None


def _complete(params: dict, shapes: dict, labels: list[str], lowered: dict) -> dict:
    # A frontend recipe knows the model's own anchors and box coder: its values win, except
    # anchors the spec names itself.
    recipe = dict(lowered.get("head") or {})
    if params.get("anchors"):
        recipe.pop("anchors", None)
    params = {**params, **recipe}
    if not params.get("anchors"):
        raise UserError("head.anchors: an anchors head needs the anchors, a .npy file of (N, 4) xyxy boxes in "
                        "input pixels (or a source recipe that writes them, e.g. source.recipe = 'torchvision')")
    anchors = load_anchors(params["anchors"])
    deltas, logits = list(shapes[params["deltas"]]), list(shapes[params["logits"]])
    n = anchors.shape[0]
    if len(deltas) != 3 or deltas[1:] != [n, 4]:
        raise UserError(f"head.deltas '{params['deltas']}' has shape {deltas}: expected (1, {n}, 4) "
                        f"for the {n} anchors of {params['anchors']}")
    classes = len(labels) + (1 if params["background"] >= 0 else 0)
    if len(logits) != 3 or logits[1:] != [n, classes]:
        raise UserError(f"head.logits '{params['logits']}' has shape {logits}: expected (1, {n}, {classes}) "
                        f"({len(labels)} labels" + (f" + the background class {params['background']})"
                                                    if params["background"] >= 0 else ")"))
    if params.get("centerness") and list(shapes[params["centerness"]])[1:] not in ([n, 1], [n]):
        raise UserError(f"head.centerness '{params['centerness']}' has shape {list(shapes[params['centerness']])}: "
                        f"expected (1, {n}, 1)")
    return params


def load_anchors(path: str) -> np.ndarray:
    try:
        anchors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: field 'head.anchors': cannot read a .npy array ({exc})") from None
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise UserError(f"{path}: field 'head.anchors': expected an (N, 4) array of xyxy boxes, "
                        f"got shape {list(anchors.shape)}")
    return anchors.astype(np.float32)


def decode_ltrb(rel: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """FCOS (torchvision's BoxLinearCoder, normalised by size): left, top, right, bottom
    distances from each anchor's centre, in units of the anchor's width and height."""
    d = rel.astype(np.float32)
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = 0.5 * (anchors[:, 0] + anchors[:, 2]), 0.5 * (anchors[:, 1] + anchors[:, 3])
    return np.stack([cx - d[:, 0] * w, cy - d[:, 1] * h, cx + d[:, 2] * w, cy + d[:, 3] * h], 1)


def decode_deltas(deltas: np.ndarray, anchors: np.ndarray, weights, order: str) -> np.ndarray:
    """(N, 4) deltas against (N, 4) xyxy anchors -> (N, 4) xyxy boxes."""
    d = deltas.astype(np.float32)
    if order == "yxhw":
        d = d[:, [1, 0, 3, 2]]
    wx, wy, ww, wh = (np.float32(w) for w in weights)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    cx = anchors[:, 0] + 0.5 * widths
    cy = anchors[:, 1] + 0.5 * heights
    pcx = d[:, 0] / wx * widths + cx
    pcy = d[:, 1] / wy * heights + cy
    pw = np.exp(np.minimum(d[:, 2] / ww, XFORM_CLIP)) * widths
    ph = np.exp(np.minimum(d[:, 3] / wh, XFORM_CLIP)) * heights
    return np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], 1)


def class_scores(logits: np.ndarray, activation: str, background: int) -> np.ndarray:
    """(N, C) logits -> (N, labels) scores, the background column dropped."""
    x = logits.astype(np.float32)
    if activation == "sigmoid":
        x = 1.0 / (1.0 + np.exp(-x))
    elif activation == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        x = e / e.sum(-1, keepdims=True)
    return np.delete(x, background, axis=-1) if background >= 0 else x


def _decode(outputs: dict[str, np.ndarray], spec, score_threshold: float) -> list[Detections]:
    head = spec.head
    p = head.params
    anchors = load_anchors(p["anchors"])
    inp = spec.inputs[0]
    dets = []
    ctr = outputs[p["centerness"]] if p.get("centerness") else [None] * len(outputs[p["logits"]])
    for deltas, logits, centerness in zip(outputs[p["deltas"]], outputs[p["logits"]], ctr):
        deltas = deltas.reshape(-1, 4)
        boxes = (decode_ltrb(deltas, anchors) if p["coder"] == "ltrb"
                 else decode_deltas(deltas, anchors, p["box_coder_weights"], p["delta_order"]))
        # Clipped to the input, as torchvision's and TensorFlow's post-processing do.
        boxes = np.clip(boxes, 0, np.array([inp.width, inp.height, inp.width, inp.height], np.float32))
        scores = class_scores(logits.reshape(len(anchors), -1), p["activation"], p["background"])
        if centerness is not None:   # FCOS: sqrt(class probability x centerness probability)
            scores = np.sqrt(scores * (1.0 / (1.0 + np.exp(-centerness.reshape(-1, 1).astype(np.float32)))))
        dets.append(decode_boxes_scores(boxes, scores, "xyxy", score_threshold, head.iou_threshold,
                                        head.max_detections, p.get("best_class", False)))
    return dets


def _graph(g, params: dict, spec):
    """The decoding above as ONNX nodes; the anchors' centres and sizes are constants."""
    anchors = load_anchors(params["anchors"])
    n = len(anchors)
    w = (anchors[:, 2] - anchors[:, 0]).reshape(1, n, 1)
    h = (anchors[:, 3] - anchors[:, 1]).reshape(1, n, 1)
    cx, cy = anchors[:, 0:1].reshape(1, n, 1) + 0.5 * w, anchors[:, 1:2].reshape(1, n, 1) + 0.5 * h
    if params["coder"] == "ltrb":   # FCOS: the centre is computed as in decode_ltrb
        cx = (0.5 * (anchors[:, 0] + anchors[:, 2])).reshape(1, n, 1)
        cy = (0.5 * (anchors[:, 1] + anchors[:, 3])).reshape(1, n, 1)
    d = g.op("Reshape", params["deltas"], g.const([1, n, 4]))
    if params["delta_order"] == "yxhw":
        d = g.op("Gather", d, g.const([1, 0, 3, 2]), axis=2)
    dx, dy, dw, dh = (g.columns(d, i, i + 1) for i in range(4))
    W, H, CX, CY = (g.const(a.astype(np.float32)) for a in (w, h, cx, cy))
    if params["coder"] == "ltrb":
        corners = [g.op("Sub", CX, g.op("Mul", dx, W)), g.op("Sub", CY, g.op("Mul", dy, H)),
                   g.op("Add", CX, g.op("Mul", dw, W)), g.op("Add", CY, g.op("Mul", dh, H))]
    else:
        wx, wy, ww, wh = (g.const(np.float32(v)) for v in params["box_coder_weights"])
        pcx = g.op("Add", g.op("Mul", g.op("Div", dx, wx), W), CX)
        pcy = g.op("Add", g.op("Mul", g.op("Div", dy, wy), H), CY)
        clip, half = g.const(np.float32(XFORM_CLIP)), g.const(np.float32(0.5))
        half_w = g.op("Mul", g.op("Mul", g.op("Exp", g.op("Min", g.op("Div", dw, ww), clip)), W), half)
        half_h = g.op("Mul", g.op("Mul", g.op("Exp", g.op("Min", g.op("Div", dh, wh), clip)), H), half)
        corners = [g.op("Sub", pcx, half_w), g.op("Sub", pcy, half_h), g.op("Add", pcx, half_w),
                   g.op("Add", pcy, half_h)]
    inp = spec.inputs[0]
    boxes = g.op("Max", g.op("Min", g.op("Concat", *corners, axis=2),
                             g.const(np.array([inp.width, inp.height, inp.width, inp.height], np.float32))),
                 g.const(np.float32(0.0)))
    classes = len(spec.labels) + (1 if params["background"] >= 0 else 0)
    scores = g.op("Reshape", params["logits"], g.const([1, n, classes]))
    if params["activation"] == "sigmoid":
        scores = g.op("Sigmoid", scores)
    elif params["activation"] == "softmax":
        scores = g.op("Softmax", scores, axis=-1)
    if params["background"] >= 0:
        kept = [c for c in range(classes) if c != params["background"]]
        scores = g.op("Gather", scores, g.const(kept), axis=2)
    if params.get("centerness"):
        ctr = g.op("Sigmoid", g.op("Reshape", params["centerness"], g.const([1, n, 1])))
        scores = g.op("Sqrt", g.op("Mul", scores, ctr))
    return boxes, scores


def _page_data(params: dict) -> dict:
    # 1e-4 px is far below what a drawn box shows, and keeps models.json small.
    return {"anchors_data": load_anchors(params["anchors"]).round(4).reshape(-1).tolist()}


HEAD = HeadType(
    name="anchors",
    fields=(Option("deltas", str, ..., "the name of the box-deltas output (1, N, 4)"),
            Option("logits", str, ..., "the name of the class-logits output (1, N, C)"),
            Option("anchors", str, "", "a .npy of (N, 4) xyxy anchors in input pixels (a recipe writes it)"),
            Option("box_coder_weights", list, [1.0, 1.0, 1.0, 1.0],
                   "the box coder's weights (x, y, w, h): SSD 10, 10, 5, 5; RetinaNet 1, 1, 1, 1", item=float),
            Option("delta_order", str, "xywh", "the order of the four deltas", choices=("xywh", "yxhw")),
            Option("coder", str, "deltas", "the box coder: SSD/RetinaNet/TF deltas, or FCOS's ltrb distances",
                   choices=("deltas", "ltrb")),
            Option("centerness", str, "", "the name of a centerness output (1, N, 1) (FCOS), if any"),
            Option("activation", str, "sigmoid", "how logits become scores", choices=("sigmoid", "softmax", "none")),
            Option("background", int, -1, "the logits column of the background class (-1: none)", minimum=-1)),
    validate=_validate, decode=_decode, complete=_complete, paths=("anchors",), page_data=_page_data, graph=_graph,
    summary="box deltas (1, N, 4) + class logits (1, N, C) + anchors; torchvision/TF box coder, class-wise NMS")
