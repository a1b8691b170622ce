"""The vectorised decoder and mAP give exactly what the first (Python-loop) implementation
gave, on the same arrays: kept here as the reference, verbatim in behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from deployer.parity.detection import (
    EVAL_SCORE_THRESHOLD,
    IOU_THRESHOLDS,
    Detections,
    _precision_at_recall,
    box_iou,
    decode_boxes_scores,
    mean_average_precision,
)


def _old_nms(boxes, scores, iou_threshold):
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


def _old_decode(boxes, scores, score_threshold, iou_threshold, max_detections):
    boxes = boxes.reshape(-1, 4).astype(np.float32)
    scores = scores.reshape(boxes.shape[0], -1).astype(np.float32)
    idx, cls = np.nonzero(scores >= score_threshold)
    if idx.size == 0:
        return Detections.empty()
    cand_boxes, cand_scores = boxes[idx], scores[idx, cls]
    if cand_scores.size > 30 * max_detections:
        top = np.argsort(-cand_scores, kind="stable")[:30 * max_detections]
        idx, cls, cand_boxes, cand_scores = idx[top], cls[top], cand_boxes[top], cand_scores[top]
    offset = cls[:, None].astype(np.float32) * (float(np.abs(cand_boxes).max()) + 1.0) * 2
    keep = _old_nms(cand_boxes + offset, cand_scores, iou_threshold)[:max_detections]
    return Detections(cand_boxes[keep], cand_scores[keep], cls[keep].astype(np.int64))


def _old_map(predictions, ground_truth, max_dets=100):
    classes = sorted({int(c) for g in ground_truth for c in g.labels})
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    for ci, c in enumerate(classes):
        n_gt, per_threshold_hits, all_scores = 0, [[] for _ in IOU_THRESHOLDS], []
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
        scores = np.concatenate(all_scores)
        order = np.argsort(-scores, kind="mergesort")
        for ti in range(len(IOU_THRESHOLDS)):
            hits = np.concatenate(per_threshold_hits[ti])[order] if scores.size else np.zeros(0, bool)
            ap[ci, ti] = _precision_at_recall(hits, n_gt).mean()
    return {"map50": float(ap[:, 0].mean()), "map50_95": float(ap.mean())}


def _head_outputs(rng, anchors=756, classes=4, objects=6, size=192.0):
    """Dense-head-like outputs: clusters of overlapping boxes around a few objects with high
    scores for one class, and a long tail of low scores everywhere (like the example's)."""
    centres = rng.uniform(20, size - 20, (objects, 2))
    half = rng.uniform(6, 40, (objects, 2))
    owner = rng.integers(0, objects, anchors)
    near = rng.random(anchors) < 0.35
    c = centres[owner] + rng.normal(0, 3, (anchors, 2))
    h = half[owner] * rng.uniform(0.8, 1.2, (anchors, 2))
    boxes = np.concatenate([c - h, c + h], 1)
    boxes[~near] = np.sort(rng.uniform(0, size, (int((~near).sum()), 2, 2)), 1).reshape(-1, 4)[:, [0, 2, 1, 3]]
    scores = rng.beta(0.3, 12, (anchors, classes))
    obj_class = rng.integers(0, classes, objects)
    scores[near, obj_class[owner[near]]] = rng.uniform(0.2, 0.97, int(near.sum()))
    # Ties, as quantized artifacts give: equal scores and equal boxes must break the same way.
    scores[::17] = np.round(scores[::17], 2)
    boxes[1::23] = boxes[::23][:len(boxes[1::23])]
    return boxes.astype(np.float32), scores.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_new_decoder_and_map_equal_the_old(seed):
    rng = np.random.default_rng(seed)
    ref_out = [_head_outputs(rng) for _ in range(6)]
    # The "artifact": the reference with int8-like noise.
    art_out = [(b + rng.normal(0, 0.6, b.shape).astype(np.float32), np.clip(s + rng.normal(0, 0.01, s.shape), 0, 1)
                .astype(np.float32)) for b, s in ref_out]
    new_ref, new_art, old_ref, old_art = [], [], [], []
    for (rb, rs), (ab, as_) in zip(ref_out, art_out):
        for boxes, scores, new, old in ((rb, rs, new_ref, old_ref), (ab, as_, new_art, old_art)):
            new.append(decode_boxes_scores(boxes, scores, "xyxy", EVAL_SCORE_THRESHOLD, 0.5, 100))
            old.append(_old_decode(boxes, scores, EVAL_SCORE_THRESHOLD, 0.5, 100))
    for n, o in zip(new_ref + new_art, old_ref + old_art):
        assert len(n.scores) == 100   # the long tail fills max_detections: NMS stops early
        np.testing.assert_array_equal(n.boxes, o.boxes)
        np.testing.assert_array_equal(n.scores, o.scores)
        np.testing.assert_array_equal(n.labels, o.labels)
    pseudo_gt = [d.above(0.25) for d in old_ref]
    new_map, old_map = mean_average_precision(new_art, pseudo_gt), _old_map(old_art, pseudo_gt)
    per_class = new_map.pop("per_class")
    assert new_map == old_map
    # The per-class figures (the report's plot) average to the same mAP.
    assert abs(np.mean([c["ap50_95"] for c in per_class.values()]) - old_map["map50_95"]) < 1e-5
    assert 0.05 < new_map["map50_95"] < 0.999   # both hits and misses exercised
