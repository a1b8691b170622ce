"""Detection decoding, class-wise NMS and COCO-style mAP, in numpy only.

mAP follows pycocotools' bbox evaluation (IoU 0.50:0.05:0.95, greedy matching of
score-sorted detections to the best-IoU unmatched ground truth, 101-point interpolated
precision, at most `max_dets` detections per image and class, classes without ground
truth left out of the mean); tests cross-check it against pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
EVAL_SCORE_THRESHOLD = 0.001  # the usual floor for mAP evaluation: keep the low-score tail
PRE_NMS_FACTOR = 30           # candidates kept before NMS: this many times max_detections


@dataclass
class Detections:
    boxes: np.ndarray   # (n, 4) xyxy
    scores: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) int

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def one_label_per_box(self) -> "Detections":
        """Each box under its best label only: a model's own multi-label NMS lists a box under
        every class it passed, with the very same coordinates."""
        if len(self.scores) == 0:
            return self
        order = np.argsort(-self.scores, kind="stable")
        _, first = np.unique(self.boxes[order], axis=0, return_index=True)
        keep = np.sort(order[first])
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def above(self, threshold: float) -> "Detections":
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS; kept indices in descending score order, stopping once `max_keep` are kept.

    Each kept box is compared with every later candidate in one vector operation, in
    float64 with box_iou's arithmetic, so the result is box_iou-based greedy NMS exactly.
    """
    order = np.argsort(-scores, kind="stable")
    n = len(order)
    b = boxes[order].astype(np.float64)
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    alive = np.ones(n, bool)
    limit = n if max_keep is None else max_keep
    keep, i = [], 0
    while i < n and len(keep) < limit:
        keep.append(i)
        rest = slice(i + 1, n)
        inter = (np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
                 * np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None))
        union = area[i] + area[rest] - inter
        alive[rest] &= np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0) <= iou_threshold
        later = np.flatnonzero(alive[rest])
        if later.size == 0:
            break
        i += 1 + int(later[0])
    return order[np.asarray(keep, np.int64)]


def decode_boxes_scores(boxes: np.ndarray, scores: np.ndarray, box_format: str, score_threshold: float,
                        iou_threshold: float, max_detections: int, best_class: bool = False) -> Detections:
    """Decode one image's (N, 4) boxes and (N, C) class scores: multi-label candidates (each
    box under every class above the threshold; or under its best class only, as Apple
    Vision's NMS does, with `best_class`), class-wise NMS."""
    boxes = boxes.reshape(-1, 4).astype(np.float32)
    scores = scores.reshape(boxes.shape[0], -1).astype(np.float32)
    if box_format == "cxcywh":
        c, wh = boxes[:, :2], boxes[:, 2:] / 2
        boxes = np.concatenate([c - wh, c + wh], 1)
    if best_class and scores.shape[1]:
        best = scores.argmax(1)
        scores = np.where(np.arange(scores.shape[1])[None, :] == best[:, None], scores, 0.0).astype(np.float32)
    idx, cls = np.nonzero(scores >= score_threshold)
    if idx.size == 0:
        return Detections.empty()
    cand_boxes, cand_scores = boxes[idx], scores[idx, cls]
    # Pre-NMS top-k (as every production decoder does) to bound its cost.
    if cand_scores.size > PRE_NMS_FACTOR * max_detections:
        top = np.argsort(-cand_scores, kind="stable")[:PRE_NMS_FACTOR * max_detections]
        idx, cls, cand_boxes, cand_scores = idx[top], cls[top], cand_boxes[top], cand_scores[top]
    # Class-wise NMS in one pass: offset boxes by class so classes never overlap.
    offset = cls[:, None].astype(np.float32) * (float(np.abs(cand_boxes).max()) + 1.0) * 2
    keep = nms(cand_boxes + offset, cand_scores, iou_threshold, max_detections)
    return Detections(cand_boxes[keep], cand_scores[keep], cls[keep].astype(np.int64))


def _precision_at_recall(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """101-point interpolated precision of a score-sorted tp/fp sequence (pycocotools)."""
    q = np.zeros(len(RECALL_POINTS))
    if tp.size == 0:
        return q
    tps = np.cumsum(tp)
    fps = np.cumsum(~tp)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    valid = idx < len(precision)
    q[valid] = precision[idx[valid]]
    return q


def match_detections(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """pycocotools' greedy matching at every IoU threshold at once: score-sorted detections
    (rows of `ious`) each take the best-IoU unmatched ground truth (columns) with IoU >= t,
    the last one among equals, as pycocotools does. Returns (thresholds, detections) hits."""
    n_det, n_gt = ious.shape
    hits = np.zeros((len(thresholds), n_det), bool)
    if n_det == 0 or n_gt == 0:
        return hits
    floor = np.minimum(thresholds, 1 - 1e-10)[:, None]
    matched = np.zeros((len(thresholds), n_gt), bool)
    # Only detections that overlap some ground truth enough can match: the low-score tail skips.
    for d in np.flatnonzero(ious.max(1) >= floor.min()):
        ok = ~matched & (ious[d][None, :] >= floor)
        found = np.flatnonzero(ok.any(1))
        if found.size == 0:
            continue
        best = n_gt - 1 - np.where(ok, ious[d][None, :], -1.0)[:, ::-1].argmax(1)
        matched[found, best[found]] = True
        hits[found, d] = True
    return hits


def mean_average_precision(predictions: list[Detections], ground_truth: list[Detections],
                           max_dets: int = 100) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@0.5:0.95 over images; ground-truth scores are ignored."""
    classes = sorted({int(c) for g in ground_truth for c in g.labels})
    if not classes:
        return {"map50": float("nan"), "map50_95": float("nan"), "per_class": {}}
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    for ci, c in enumerate(classes):
        n_gt, hits, scores = 0, [], []
        for pred, gt in zip(predictions, ground_truth):
            g = gt.boxes[gt.labels == c]
            pm = pred.labels == c
            order = np.argsort(-pred.scores[pm], kind="mergesort")[:max_dets]
            p_boxes, p_scores = pred.boxes[pm][order], pred.scores[pm][order]
            n_gt += len(g)
            scores.append(p_scores)
            hits.append(match_detections(box_iou(p_boxes, g)))
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="mergesort")
        all_hits = np.concatenate(hits, 1)[:, order] if hits else np.zeros((len(IOU_THRESHOLDS), 0), bool)
        for ti in range(len(IOU_THRESHOLDS)):
            ap[ci, ti] = _precision_at_recall(all_hits[ti], n_gt).mean()
    # Per class (by index) for the report's per-class AP plot.
    per_class = {str(c): {"ap50": round(float(ap[ci, 0]), 5), "ap50_95": round(float(ap[ci].mean()), 5)}
                 for ci, c in enumerate(classes)}
    return {"map50": float(ap[:, 0].mean()), "map50_95": float(ap.mean()), "per_class": per_class}


def save_detections(path, detections: list[Detections]) -> None:
    """Per-image detections in one .npz (concatenated arrays and per-image counts)."""
    counts = np.array([len(d.scores) for d in detections], np.int64)
    np.savez(path, counts=counts,
             boxes=np.concatenate([d.boxes for d in detections]).astype(np.float32) if detections else np.zeros((0, 4)),
             scores=np.concatenate([d.scores for d in detections]).astype(np.float32) if detections else np.zeros(0),
             labels=np.concatenate([d.labels for d in detections]).astype(np.int64) if detections else np.zeros(0))


def load_detections(path) -> list[Detections]:
    data = np.load(path)
    bounds = np.concatenate([[0], np.cumsum(data["counts"])])
    return [Detections(data["boxes"][a:b].reshape(-1, 4), data["scores"][a:b], data["labels"][a:b])
            for a, b in zip(bounds[:-1], bounds[1:])]
