"""Train ShapesDet on the synthetic shapes dataset, on the CPU, seeded.

    python -m examples.shapes.train --out examples/shapes/shapes.pt

Images come from deployer's generator (train seed 1, held-out seed 2) and go through the
same letterbox preprocessing as deployment. Assignment is FCOS-style (grid points inside a
box's centre region, one pyramid level per object size); the classification target is the
IoU of the predicted box (quality focal loss), the box loss GIoU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deployer.datasets.preprocess import prepare
from deployer.datasets.synth import CLASSES, generate
from deployer.parity.detection import EVAL_SCORE_THRESHOLD, Detections, decode_boxes_scores, mean_average_precision
from deployer.spec import InputSpec, Preprocess
from examples.shapes.model import STRIDES, ShapesDet

SIZE = 192
INPUT = InputSpec("images", [1, 3, SIZE, SIZE])
PRE = Preprocess()
TRAIN_SEED, HELDOUT_SEED = 1, 2
# Objects are assigned to a level by their largest centre-to-side distance (pixels).
LEVEL_RANGES = {8: (0.0, 24.0), 16: (24.0, 48.0), 32: (48.0, 1e9)}


def make_split(count: int, seed: int):
    xs, targets = [], []
    for s in generate(count, seed):
        x, tf = prepare(s.image, INPUT, PRE)
        xs.append((x[0] * 255).round().astype(np.uint8))
        targets.append((tf.to_network(s.boxes), s.labels))
    return np.stack(xs), targets


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    clt, crb = torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])
    hull = (crb - clt).clamp(min=0).prod(1) + 1e-7
    return iou - (hull - union) / hull, iou


def assign(points, strides, boxes, labels):
    """Per grid point: index of its ground-truth box, or -1."""
    n = points.shape[0]
    if len(boxes) == 0:
        return torch.full((n,), -1, dtype=torch.long)
    px, py = points[:, 0:1], points[:, 1:2]
    l, t = px - boxes[:, 0], py - boxes[:, 1]
    r, b = boxes[:, 2] - px, boxes[:, 3] - py
    inside = torch.stack([l, t, r, b], -1).amin(-1) > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = 1.5 * strides
    central = ((px - cx).abs() < radius) & ((py - cy).abs() < radius)
    reach = torch.stack([l, t, r, b], -1).amax(-1)
    lo = torch.tensor([LEVEL_RANGES[int(s)][0] for s in strides[:, 0]])[:, None]
    hi = torch.tensor([LEVEL_RANGES[int(s)][1] for s in strides[:, 0]])[:, None]
    ok = inside & central & (reach >= lo) & (reach <= hi)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(1)
    return torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))


def loss_fn(model, images, targets):
    dist, logits = model.raw(images)
    pred_boxes, _ = model.decode(dist, logits)
    points, strides = model.points[0], model.strides[0]
    cls_target = torch.zeros_like(logits)
    box_losses, n_pos = [], 0
    for i, (boxes, labels) in enumerate(targets):
        gt = torch.as_tensor(boxes, dtype=torch.float32)
        idx = assign(points, strides, gt, labels)
        pos = idx >= 0
        if not pos.any():
            continue
        g, iou = giou(pred_boxes[i][pos], gt[idx[pos]])
        box_losses.append((1 - g).sum())
        cls_target[i, pos, torch.as_tensor(labels)[idx[pos]]] = iou.detach().clamp(min=0.05)
        n_pos += int(pos.sum())
    n_pos = max(n_pos, 1)
    p = torch.sigmoid(logits)
    qfl = nn.functional.binary_cross_entropy_with_logits(logits, cls_target, reduction="none") * (p - cls_target).abs().pow(2)
    box = torch.stack(box_losses).sum() if box_losses else logits.sum() * 0
    return qfl.sum() / n_pos + 2.0 * box / n_pos


@torch.no_grad()
def evaluate(model, xs, targets, batch=64):
    model.eval()
    preds, gts = [], []
    for i in range(0, len(xs), batch):
        x = torch.from_numpy(xs[i:i + batch]).float() / 255
        boxes, scores = model(x)
        for b, s in zip(boxes.numpy(), scores.numpy()):
            preds.append(decode_boxes_scores(b, s, "xyxy", EVAL_SCORE_THRESHOLD, 0.5, 100))
    for boxes, labels in targets:
        gts.append(Detections(boxes, np.ones(len(boxes), np.float32), labels))
    return mean_average_precision(preds, gts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/shapes/shapes.pt")
    ap.add_argument("--train-images", type=int, default=6000)
    ap.add_argument("--heldout-images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    train_x, train_t = make_split(args.train_images, TRAIN_SEED)
    held_x, held_t = make_split(args.heldout_images, HELDOUT_SEED)
    print(f"data ready in {time.time() - start:.0f} s", flush=True)

    model = ShapesDet(num_classes=len(CLASSES), image_size=SIZE)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    warmup = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps)))
    model.train()
    for step in range(args.steps):
        idx = rng.integers(0, len(train_x), args.batch)
        x = torch.from_numpy(train_x[idx]).float() / 255
        tgts = [train_t[i] for i in idx]
        if rng.random() < 0.5:  # horizontal flip of the whole batch
            x = x.flip(3)
            tgts = [(np.stack([SIZE - b[:, 2], b[:, 1], SIZE - b[:, 0], b[:, 3]], 1) if len(b) else b, l) for b, l in tgts]
        loss = loss_fn(model, x, tgts)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f} s", flush=True)
    metrics = evaluate(model, held_x, held_t)
    print(f"held-out mAP@0.5 {metrics['map50']:.3f}  mAP@0.5:0.95 {metrics['map50_95']:.3f}", flush=True)
    out = Path(args.out)
    torch.save(model.state_dict(), out)
    out.with_suffix(".json").write_text(json.dumps({
        "heldout_images": args.heldout_images, "heldout_seed": HELDOUT_SEED, "train_images": args.train_images,
        "steps": args.steps, "batch": args.batch, "seed": args.seed, "train_seconds": round(time.time() - start),
        **{k: round(v, 4) for k, v in metrics.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
