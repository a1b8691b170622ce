"""Data and scoring shared by the PyTorch and Keras trainers (numpy only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deployer.datasets.preprocess import prepare
from deployer.datasets.synth import generate
from deployer.parity.detection import EVAL_SCORE_THRESHOLD, Detections, decode_boxes_scores, mean_average_precision
from deployer.spec import InputSpec, Preprocess

SIZE = 192
INPUT = InputSpec("images", [1, 3, SIZE, SIZE])
PRE = Preprocess()
TRAIN_SEED, HELDOUT_SEED = 1, 2


def make_split(count: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, list]:
    """Letterboxed uint8 NCHW images (size x size) and their (boxes, labels) in network pixels."""
    inp = INPUT if size == SIZE else InputSpec("images", [1, 3, size, size])
    xs, targets = [], []
    for s in generate(count, seed):
        x, tf = prepare(s.image, inp, PRE)
        xs.append((x[0] * 255).round().astype(np.uint8))
        targets.append((tf.to_network(s.boxes), s.labels))
    return np.stack(xs), targets


def flip_targets(targets: list) -> list:
    """Boxes of horizontally flipped images."""
    return [(np.stack([SIZE - b[:, 2], b[:, 1], SIZE - b[:, 0], b[:, 3]], 1) if len(b) else b, l) for b, l in targets]


def heldout_map(boxes: np.ndarray, scores: np.ndarray, targets: list) -> dict[str, float]:
    preds = [decode_boxes_scores(b, s, "xyxy", EVAL_SCORE_THRESHOLD, 0.5, 100) for b, s in zip(boxes, scores)]
    gts = [Detections(b, np.ones(len(b), np.float32), l) for b, l in targets]
    return mean_average_precision(preds, gts)


def write_report(out: Path, metrics: dict, args, seconds: float, framework: str) -> None:
    out.with_suffix(".json").write_text(json.dumps({
        "framework": framework, "heldout_images": args.heldout_images, "heldout_seed": HELDOUT_SEED,
        "train_images": args.train_images, "train_seed": TRAIN_SEED, "steps": args.steps, "batch": args.batch,
        "seed": args.seed, "train_seconds": round(seconds), **{k: round(v, 4) for k, v in metrics.items()}},
        indent=2) + "\n")


def add_arguments(ap) -> None:
    ap.add_argument("--train-images", type=int, default=6000)
    ap.add_argument("--heldout-images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
