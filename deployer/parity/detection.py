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


@dataclass
class Detections:
    boxes: np.ndarray   # (n, 4) xyxy
    scores: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) int

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, np.int64)


def decode_boxes_scores(boxes: np.ndarray, scores: np.ndarray, box_format: str, score_threshold: float,
                        iou_threshold: float, max_detections: int) -> Detections:
    """Decode one image's (N, 4) boxes and (N, C) class scores: multi-label candidates, class-wise NMS."""
    boxes = boxes.reshape(-1, 4).astype(np.float32)
    scores = scores.reshape(boxes.shape[0], -1).astype(np.float32)
    if box_format == "cxcywh":
        c, wh = boxes[:, :2], boxes[:, 2:] / 2
        boxes = np.concatenate([c - wh, c + wh], 1)
    idx, cls = np.nonzero(scores >= score_threshold)
    if idx.size == 0:
        return Detections.empty()
    cand_boxes, cand_scores = boxes[idx], scores[idx, cls]
    # Cap candidates before NMS (as every production decoder does) to bound its cost.
    if cand_scores.size > 30 * max_detections:
        top = np.argsort(-cand_scores, kind="stable")[:30 * max_detections]
        idx, cls, cand_boxes, cand_scores = idx[top], cls[top], cand_boxes[top], cand_scores[top]
    # Class-wise NMS in one pass: offset boxes by class so classes never overlap.
    offset = cls[:, None].astype(np.float32) * (float(np.abs(cand_boxes).max()) + 1.0) * 2
    keep = nms(cand_boxes + offset, cand_scores, iou_threshold)[:max_detections]
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


def mean_average_precision(predictions: list[Detections], ground_truth: list[Detections],
                           max_dets: int = 100) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@0.5:0.95 over images; ground-truth scores are ignored."""
    classes = sorted({int(c) for g in ground_truth for c in g.labels})
    if not classes:
        return {"map50": float("nan"), "map50_95": float("nan")}
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    for ci, c in enumerate(classes):
        n_gt = 0
        per_threshold_hits = [[] for _ in IOU_THRESHOLDS]
        all_scores = []
        for pred, gt in zip(predictions, ground_truth):
            g = gt.boxes[gt.labels == c]
            pm = pred.labels == c
            p_boxes, p_scores = pred.boxes[pm], pred.scores[pm]
            order = np.argsort(-p_scores, kind="mergesort")[:max_dets]
            p_boxes, p_scores = p_boxes[order], p_scores[order]
            n_gt += len(g)
            all_scores.append(p_scores)
            ious = box_iou(p_boxes, g)
            for ti, t in enumerate(IOU_THRESHOLDS):
                matched = np.zeros(len(g), bool)
                hits = np.zeros(len(p_boxes), bool)
                for d in range(len(p_boxes)):
                    best, best_iou = -1, min(t, 1 - 1e-10)
                    for j in range(len(g)):
                        if matched[j] or ious[d, j] < best_iou:
                            continue
                        best, best_iou = j, ious[d, j]
                    if best >= 0:
                        matched[best] = True
                        hits[d] = True
                per_threshold_hits[ti].append(hits)
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        order = np.argsort(-scores, kind="mergesort")
        for ti in range(len(IOU_THRESHOLDS)):
            hits = np.concatenate(per_threshold_hits[ti])[order] if scores.size else np.zeros(0, bool)
            ap[ci, ti] = _precision_at_recall(hits, n_gt).mean()
    return {"map50": float(ap[:, 0].mean()), "map50_95": float(ap.mean())}
