"""Training targets shared by the PyTorch and Keras trainers (numpy only).

FCOS-style assignment: a grid point is positive for a box when it lies inside the box,
within 1.5 strides of its centre, and on the pyramid level that matches the box's size
(its largest centre-to-side distance); among several boxes the smallest wins. Assignment
does not depend on predictions, so it is computed once per image.
"""

from __future__ import annotations

import numpy as np

STRIDES = (8, 16, 32)
# Objects go to a level by their largest point-to-side distance in pixels.
LEVEL_RANGES = {8: (0.0, 24.0), 16: (24.0, 48.0), 32: (48.0, 1e9)}


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid point centres (N, 2) in pixels and their strides (N,), level by level, row-major."""
    pts, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pts.append((np.stack([xs, ys], -1).reshape(-1, 2) + 0.5) * s)
        strides.append(np.full(n * n, float(s)))
    return np.concatenate(pts).astype(np.float32), np.concatenate(strides).astype(np.float32)


def assign(points: np.ndarray, strides: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per grid point: the index of its ground-truth box, or -1."""
    n = len(points)
    if len(boxes) == 0:
        return np.full(n, -1, np.int64)
    px, py = points[:, 0:1], points[:, 1:2]
    sides = np.stack([px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py], -1)
    inside = sides.min(-1) > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = 1.5 * strides[:, None]
    central = (np.abs(px - cx) < radius) & (np.abs(py - cy) < radius)
    reach = sides.max(-1)
    lo = np.array([LEVEL_RANGES[int(s)][0] for s in strides])[:, None]
    hi = np.array([LEVEL_RANGES[int(s)][1] for s in strides])[:, None]
    ok = inside & central & (reach >= lo) & (reach <= hi)
    area = np.where(ok, ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None], np.inf)
    best = area.argmin(1)
    return np.where(np.isfinite(area.min(1)), best, -1).astype(np.int64)


def dense_targets(points, strides, boxes, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grid point: positive mask (N,), matched box (N, 4), matched class (N,)."""
    idx = assign(points, strides, boxes)
    pos = idx >= 0
    matched = np.zeros((len(points), 4), np.float32)
    cls = np.zeros(len(points), np.int64)
    matched[pos] = boxes[idx[pos]]
    cls[pos] = labels[idx[pos]]
    return pos, matched, cls
