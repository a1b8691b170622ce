"""One scene encoded in each head type's output layout: three objects and a near-duplicate
that NMS must remove, among low-score noise rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deployer.parity.detection import Detections
from deployer.spec import Head, InputSpec

LABELS = ["circle", "square", "star"]
WIDTH, HEIGHT = 128, 96
NOISE = 20


@dataclass
class Spec:
    """What decoders read of a ModelSpec: the head, the labels and the input size."""

    type: str
    params: dict
    head: Head = None
    labels: list = field(default_factory=lambda: list(LABELS))
    inputs: list = field(default_factory=lambda: [InputSpec("images", [1, 3, HEIGHT, WIDTH], "NCHW")])

    def __post_init__(self):
        self.head = Head(type=self.type, score_threshold=0.25, iou_threshold=0.5, max_detections=100,
                         params=dict(self.params))


def scene() -> Detections:
    """The expected detections, by descending score."""
    return Detections(np.array([[10, 12, 50, 60], [60, 20, 120, 80], [20, 30, 70, 90]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 2, 1], np.int64))


def _rows():
    """(boxes xyxy, per-class scores) of every row: the scene, a duplicate of the first object
    with a lower score, and noise below the threshold."""
    s = scene()
    rng = np.random.default_rng(7)
    boxes = [*s.boxes, s.boxes[0] + 2]
    scores = np.full((4 + NOISE, len(LABELS)), 0.01, np.float32)
    for i, (label, score) in enumerate(zip([*s.labels, 0], [*s.scores, 0.6])):
        scores[i, label] = score
    xy = rng.uniform(0, 80, (NOISE, 2))
    noise = np.concatenate([xy, xy + rng.uniform(5, 40, (NOISE, 2))], 1)
    scores[4:] = rng.uniform(0.0, 0.2, (NOISE, len(LABELS)))
    return np.concatenate([np.array(boxes), noise]).astype(np.float32), scores


def _cxcywh(b):
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1).astype(np.float32)


def boxes_scores(box_format="xyxy"):
    boxes, scores = _rows()
    if box_format == "cxcywh":
        boxes = _cxcywh(boxes)
    spec = Spec("boxes_scores", {"boxes": "boxes", "scores": "scores", "box_format": box_format})
    return spec, {"boxes": boxes[None], "scores": scores[None]}, scene()


def yolo_v8():
    boxes, scores = _rows()
    out = np.concatenate([_cxcywh(boxes), scores], 1).T[None]   # (1, 4 + nc, N)
    return Spec("yolo", {"output": "y", "layout": "v8", "channels_first": True}), {"y": out}, scene()


def yolo_v5():
    boxes, scores = _rows()
    obj = np.sqrt(scores.max(1, keepdims=True))
    out = np.concatenate([_cxcywh(boxes), obj, scores / obj], 1)[None]   # (1, N, 5 + nc)
    return Spec("yolo", {"output": "y", "layout": "v5", "channels_first": False}), {"y": out.astype(np.float32)}, scene()


ANCHORS = None


def anchors_case():
    """SSD-style: softmax with the background in column 0, box coder weights 10, 10, 5, 5."""
    import tempfile

    global ANCHORS
    boxes, scores = _rows()
    rng = np.random.default_rng(3)
    anchors = boxes + rng.uniform(-4, 4, boxes.shape).astype(np.float32)
    anchors[:, 2:] = np.maximum(anchors[:, 2:], anchors[:, :2] + 2)
    weights = [10.0, 10.0, 5.0, 5.0]
    a_wh = anchors[:, 2:] - anchors[:, :2]
    a_c = anchors[:, :2] + a_wh / 2
    t = _cxcywh(boxes)
    deltas = np.concatenate([(t[:, :2] - a_c) / a_wh * 10.0, np.log(t[:, 2:] / a_wh) * 5.0], 1).astype(np.float32)
    probs = np.concatenate([np.zeros((len(scores), 1), np.float32), scores], 1)
    probs[:, 0] = 1.0 - probs[:, 1:].sum(1)
    logits = np.log(probs).astype(np.float32)
    if ANCHORS is None:
        ANCHORS = tempfile.NamedTemporaryFile(suffix=".npy", delete=False).name
    np.save(ANCHORS, anchors)
    spec = Spec("anchors", {"deltas": "deltas", "logits": "logits", "anchors": ANCHORS, "box_coder_weights": weights,
                            "delta_order": "xywh", "coder": "deltas", "activation": "softmax", "background": 0})
    return spec, {"deltas": deltas[None], "logits": logits[None]}, scene()


def fcos_case():
    """FCOS-style: ltrb distances in anchor units, sigmoid logits, a centerness output; the
    score is sqrt(class x centerness)."""
    import tempfile

    boxes, scores = _rows()
    rng = np.random.default_rng(5)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 + rng.uniform(-2, 2, (len(boxes), 2)).astype(np.float32)
    size = rng.uniform(8, 32, (len(boxes), 1)).astype(np.float32)
    anchors = np.concatenate([centres - size / 2, centres + size / 2], 1)
    rel = np.concatenate([centres - boxes[:, :2], boxes[:, 2:] - centres], 1) / size
    centerness = np.full((len(boxes), 1), 20.0, np.float32)           # sigmoid ~ 1
    logits = np.log(scores ** 2 / (1 - scores ** 2)).astype(np.float32)
    path = tempfile.NamedTemporaryFile(suffix=".npy", delete=False).name
    np.save(path, anchors.astype(np.float32))
    spec = Spec("anchors", {"deltas": "rel", "logits": "logits", "centerness": "ctr", "anchors": path,
                            "box_coder_weights": [1.0, 1.0, 1.0, 1.0], "delta_order": "xywh", "coder": "ltrb",
                            "activation": "sigmoid", "background": -1})
    return spec, {"rel": rel.astype(np.float32)[None], "logits": logits[None], "ctr": centerness[None]}, scene()


def end2end():
    """TF Object Detection API style: normalised yxyx, 1-based classes, a count; rows past the
    count and below the threshold must not show."""
    s = scene()
    k = 8
    boxes = np.zeros((k, 4), np.float32)
    boxes[:3] = s.boxes / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32)
    boxes[:3] = boxes[:3][:, [1, 0, 3, 2]]
    scores = np.zeros(k, np.float32)
    scores[:3] = s.scores
    scores[3] = 0.1          # below the threshold
    scores[5] = 0.95         # past the count
    classes = np.zeros(k, np.float32)
    classes[:3] = s.labels + 1
    spec = Spec("end2end", {"boxes": "b", "scores": "s", "classes": "c", "count": "num", "box_format": "yxyx",
                            "normalized": True, "class_offset": 1})
    return spec, {"b": boxes[None], "s": scores[None], "c": classes[None], "num": np.array([4.0], np.float32)}, s


CASES = {"boxes_scores": boxes_scores, "boxes_scores_cxcywh": lambda: boxes_scores("cxcywh"), "yolo_v8": yolo_v8,
         "yolo_v5": yolo_v5, "anchors": anchors_case, "anchors_fcos": fcos_case, "end2end": end2end}
