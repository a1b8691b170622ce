"""Detection decoding, NMS and mAP; mAP cross-checked against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from deployer.parity.detection import Detections, box_iou, decode_boxes_scores, mean_average_precision, nms


def _random_case(seed: int, images: int = 12, classes: int = 3):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(8, 60, (n, 2))
        g = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        gl = rng.integers(0, classes, n)
        gts.append(Detections(g, np.ones(n, np.float32), gl))
        # Predictions: jittered copies of some ground truths, plus false positives.
        keep = rng.random(n) < 0.8
        jitter = g[keep] + rng.normal(0, 4, (int(keep.sum()), 4)).astype(np.float32)
        fp_n = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 150, (fp_n, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(8, 60, (fp_n, 2))], 1).astype(np.float32)
        boxes = np.concatenate([jitter, fp]).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.concatenate([np.where(rng.random(int(keep.sum())) < 0.9, gl[keep], (gl[keep] + 1) % classes),
                                 rng.integers(0, classes, fp_n)]).astype(np.int64)
        preds.append(Detections(boxes, rng.uniform(0.05, 1, len(boxes)).astype(np.float32), labels))
    return preds, gts


def _pycocotools_map(preds, gts, classes: int = 3):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i + 1, "width": 300, "height": 300} for i in range(len(gts))]
    anns, dets = [], []
    for i, g in enumerate(gts):
        for b, l in zip(g.boxes, g.labels):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(l) + 1,
                         "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
    for i, p in enumerate(preds):
        for b, s, l in zip(p.boxes, p.scores, p.labels):
            dets.append({"image_id": i + 1, "category_id": int(l) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": c + 1, "name": str(c)} for c in range(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "bbox")
        ev.params.areaRng = [[0, 1e10]]  # deployer does not split by object area
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (iou, recall, class) at maxDets=100
    per_class = [precision[:, :, c] for c in range(precision.shape[2]) if (precision[:, :, c] > -1).any()]
    stacked = np.stack(per_class)
    return float(stacked[:, 0, :].mean()), float(stacked.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_pycocotools(seed):
    preds, gts = _random_case(seed)
    ours = mean_average_precision(preds, gts)
    map50, map50_95 = _pycocotools_map(preds, gts)
    assert ours["map50"] == pytest.approx(map50, abs=1e-3)
    assert ours["map50_95"] == pytest.approx(map50_95, abs=1e-3)
    assert 0.05 < ours["map50_95"] < 0.95  # a case that exercises both hits and misses


def test_perfect_predictions_score_one():
    _, gts = _random_case(5)
    perfect = [Detections(g.boxes, np.linspace(1, 0.5, len(g.labels)).astype(np.float32), g.labels) for g in gts]
    m = mean_average_precision(perfect, gts)
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(1.0)


def test_no_ground_truth_gives_nan():
    m = mean_average_precision([Detections.empty()], [Detections.empty()])
    assert np.isnan(m["map50"])


def test_nms_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5)
    assert keep.tolist() == [0, 2]


def test_decode_is_class_wise_and_thresholded():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.1, 0.05]], np.float32)
    d = decode_boxes_scores(boxes, scores, "xyxy", 0.25, 0.5, 100)
    # Overlapping boxes of different classes both survive; the low-score one is dropped.
    assert sorted(d.labels.tolist()) == [0, 1] and len(d.scores) == 2
    c = decode_boxes_scores(np.array([[5, 5, 10, 10]], np.float32), np.array([[0.9]], np.float32), "cxcywh", 0.1, 0.5, 10)
    np.testing.assert_allclose(c.boxes, [[0, 0, 10, 10]])


def test_box_iou():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]])


def test_best_class_decoding_puts_each_box_under_its_best_class_only():
    """Apple Vision's NMS semantics: a box scoring above the threshold in two classes is a
    candidate of its best class only, so it cannot survive under the other one."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.6], [0.3, 0.8], [0.2, 0.7]], np.float32)
    multi = decode_boxes_scores(boxes, scores, "xyxy", 0.25, 0.5, 100)
    best = decode_boxes_scores(boxes, scores, "xyxy", 0.25, 0.5, 100, best_class=True)
    # Multi-label: box 0 in class 0 (0.9), box 1 in class 1 (0.8), box 2 in class 1 (0.7),
    # box 1 in class 0 (0.3) suppressed by box 0; box 0 in class 1 (0.6) suppressed by box 1.
    for dets in (multi, best):
        assert sorted(zip(dets.labels.tolist(), [round(float(s), 2) for s in dets.scores])) == [
            (0, 0.9), (1, 0.7), (1, 0.8)]
    # A box whose best class is suppressed does not come back under its second class.
    scores2 = np.array([[0.9, 0.1], [0.8, 0.6]], np.float32)
    two = boxes[:2]
    assert decode_boxes_scores(two, scores2, "xyxy", 0.25, 0.5, 100).labels.tolist() == [0, 1]
    assert decode_boxes_scores(two, scores2, "xyxy", 0.25, 0.5, 100, best_class=True).labels.tolist() == [0]
