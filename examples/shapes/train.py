"""Train ShapesDet on the synthetic shapes dataset, on the CPU, seeded.

    python -m examples.shapes.train --out examples/shapes/shapes.pt

Images come from deployer's generator (train seed 1, held-out seed 2) and go through the
same letterbox preprocessing as deployment. Assignment is FCOS-style (grid points inside a
box's centre region, one pyramid level per object size); the classification target is the
IoU of the predicted box (quality focal loss), the box loss GIoU. Targets: targets.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from examples.shapes.data import (HELDOUT_SEED, SIZE, TRAIN_SEED, add_arguments, flip_targets, heldout_map,
                                  make_split, write_report)
from deployer.datasets.synth import CLASSES
from examples.shapes.model import ShapesDet
from examples.shapes.targets import dense_targets, grid

GRID = grid(SIZE)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    clt, crb = torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])
    hull = (crb - clt).clamp(min=0).prod(1) + 1e-7
    return iou - (hull - union) / hull, iou


def loss_fn(model, images, targets):
    dist, logits = model.raw(images)
    pred_boxes, _ = model.decode(dist, logits)
    points, strides = GRID
    cls_target = torch.zeros_like(logits)
    box_losses, n_pos = [], 0
    for i, (boxes, labels) in enumerate(targets):
        pos, matched, cls = (torch.from_numpy(t) for t in dense_targets(points, strides, boxes, labels))
        if not pos.any():
            continue
        g, iou = giou(pred_boxes[i][pos], matched[pos])
        box_losses.append((1 - g).sum())
        cls_target[i, pos, cls[pos]] = iou.detach().clamp(min=0.05)
        n_pos += int(pos.sum())
    n_pos = max(n_pos, 1)
    p = torch.sigmoid(logits)
    qfl = nn.functional.binary_cross_entropy_with_logits(logits, cls_target, reduction="none") * (p - cls_target).abs().pow(2)
    box = torch.stack(box_losses).sum() if box_losses else logits.sum() * 0
    return qfl.sum() / n_pos + 2.0 * box / n_pos


@torch.no_grad()
def evaluate(model, xs, targets, batch=64):
    model.eval()
    boxes, scores = [], []
    for i in range(0, len(xs), batch):
        b, s = model(torch.from_numpy(xs[i:i + batch]).float() / 255)
        boxes.append(b.numpy())
        scores.append(s.numpy())
    return heldout_map(np.concatenate(boxes), np.concatenate(scores), targets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/shapes/shapes.pt")
    add_arguments(ap)
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
            tgts = flip_targets(tgts)
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
    write_report(out, metrics, args, time.time() - start, f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
