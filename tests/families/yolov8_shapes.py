"""A small YOLOv8-layout detector trained briefly on the synthetic shapes, for tests of INT8 on
a real Ultralytics head whose scores mean something (random weights give noise to quantize).

Architecture (the building blocks of tests/backends/torch_detectors.py): a Conv-BN-SiLU / C2f
backbone with SPPF, YOLOv8's PAN neck (upsample + concat + C2f, then strided Conv + concat +
C2f) and its Detect head on strides 8, 16 and 32: decoupled box (4 x 16 DFL bins) and class
branches of two 3x3 Convs and a 1x1 conv each, DFL (softmax over 16 bins, fixed 0..15 1x1 conv
expectation), anchor points and strides, and `cat((xywh * strides, cls.sigmoid()), 1)`: one
output (1, 4 + nc, N) with cx, cy, w, h in input pixels, as an Ultralytics export gives it
(deployer's `yolo` head reads it as layout v8, channels first). Input 1x3x160x160 (letterbox,
pad 114, /255), 4 classes (circle, square, triangle, star), N = 400 + 100 + 25 = 525.

Training (seeded, bit-for-bit repeatable on one thread; about 4.5 minutes on one CPU thread):

    python -m tests.families.yolov8_shapes --train tests/families/yolov8_shapes.pt

Images come from deployer's shapes generator (examples/shapes: train seed 1, held-out seed 2;
the bundled evaluation images are seed 101, never seen), augmented by the eight flips and
transposes of the square input. Assignment is the example's centre sampling (grid points inside
a box, near its centre, on the level of its size: examples/shapes/targets.py), the box loss
GIoU + DFL, the class loss BCE against the IoU of the predicted box (quality focal weighting);
AdamW, cosine schedule, EMA of the weights (what is saved). The saved weights reach labelled
mAP@0.5 0.776 / @0.5:0.95 0.551 on 200 held-out generated images, and 0.721 / 0.500 on the
64 bundled evaluation images (calibration/eval) through deployer's `yolo` head.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.backends.torch_detectors import DFL, SPPF, C2f, Conv

SIZE = 160
STRIDES = (8, 16, 32)
REG = 16
NC = 4
WEIGHTS = Path(__file__).with_suffix(".pt")


class Detect(nn.Module):
    """Ultralytics' Detect head: per level a box branch (cv2) and a class branch (cv3), DFL
    decoding against anchor points (grid cell centres in stride units) and strides."""

    def __init__(self, nc: int, ch: tuple[int, ...], size: int, hidden: int = 32):
        super().__init__()
        self.nc, self.reg = nc, REG
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(c, hidden, 3), Conv(hidden, hidden, 3),
                                               nn.Conv2d(hidden, 4 * REG, 1)) for c in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(c, hidden, 3), Conv(hidden, hidden, 3),
                                               nn.Conv2d(hidden, nc, 1)) for c in ch)
        self.dfl = DFL(REG)
        anchors, strides = [], []
        for stride in STRIDES:
            n = size // stride
            yv, xv = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
            anchors.append(torch.stack((xv, yv), -1).view(-1, 2))
            strides.append(torch.full((n * n, 1), float(stride)))
        self.register_buffer("anchors", torch.cat(anchors).T.unsqueeze(0), persistent=False)   # (1, 2, N)
        self.register_buffer("strides", torch.cat(strides).T.unsqueeze(0), persistent=False)   # (1, 1, N)
        with torch.no_grad():   # Ultralytics' bias init: box distances ~1, class prior ~5 objects per image
            for a, b, s in zip(self.cv2, self.cv3, STRIDES):
                a[-1].bias.fill_(1.0)
                b[-1].bias.fill_(math.log(5 / nc / (size / s) ** 2))

    def raw(self, feats):
        """DFL logits (b, 4 * 16, N) and class logits (b, nc, N)."""
        x = torch.cat([torch.cat((self.cv2[i](f), self.cv3[i](f)), 1).flatten(2) for i, f in enumerate(feats)], 2)
        return x.split((4 * self.reg, self.nc), 1)

    def decode(self, box, cls):
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((xywh, cls.sigmoid()), 1)

    def forward(self, feats):
        return self.decode(*self.raw(feats))


class YoloV8Shapes(nn.Module):
    """Backbone P1-P5 (Conv, C2f, SPPF), PAN neck, Detect head on P3, P4, P5."""

    def __init__(self, nc: int = NC, size: int = SIZE, widths=(8, 16, 32, 48, 64), hidden: int = 24):
        super().__init__()
        c0, c1, c2, c3, c4 = widths
        self.b0 = Conv(3, c0, 3, 2)                                       # /2
        self.b1 = nn.Sequential(Conv(c0, c1, 3, 2), C2f(c1, c1))          # /4
        self.b2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2))          # /8  P3
        self.b3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3))          # /16 P4
        self.b4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4), SPPF(c4, c4))   # /32 P5
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4, self.top3 = C2f(c4 + c3, c3), C2f(c3 + c2, c2)         # top-down
        self.down3, self.out4 = Conv(c2, c2, 3, 2), C2f(c2 + c3, c3)      # bottom-up
        self.down4, self.out5 = Conv(c3, c3, 3, 2), C2f(c3 + c4, c4)
        self.head = Detect(nc, (c2, c3, c4), size, hidden)

    def features(self, x):
        p3 = self.b2(self.b1(self.b0(x)))
        p4 = self.b3(p3)
        p5 = self.b4(p4)
        t4 = self.top4(torch.cat([self.up(p5), p4], 1))
        o3 = self.top3(torch.cat([self.up(t4), p3], 1))
        o4 = self.out4(torch.cat([self.down3(o3), t4], 1))
        o5 = self.out5(torch.cat([self.down4(o4), p5], 1))
        return o3, o4, o5

    def raw(self, x):
        return self.head.raw(self.features(x))

    def forward(self, x):
        return self.head(self.features(x))     # (b, 4 + nc, N): cx, cy, w, h pixels, class scores


def build() -> YoloV8Shapes:
    """The architecture with its (seeded) initial weights."""
    torch.manual_seed(0)
    return YoloV8Shapes().eval()


def load(weights: str | Path = WEIGHTS) -> YoloV8Shapes:
    """The trained detector (tests/families/yolov8_shapes.pt), in eval mode."""
    model = build()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


# ---------------------------------------------------------------------------- training

def _dihedral(x: torch.Tensor, targets: list, k: int) -> tuple[torch.Tensor, list]:
    """One of the 8 flips/transposes of a square batch (bit 0: horizontal flip, bit 1:
    vertical flip, bit 2: transpose), boxes alike."""
    out = []
    for b, lab in targets:
        b = b.copy()
        if k & 1:
            b[:, [0, 2]] = SIZE - b[:, [2, 0]]
        if k & 2:
            b[:, [1, 3]] = SIZE - b[:, [3, 1]]
        if k & 4:
            b = b[:, [1, 0, 3, 2]]
        out.append((b, lab))
    if k & 1:
        x = x.flip(3)
    if k & 2:
        x = x.flip(2)
    if k & 4:
        x = x.transpose(2, 3)
    return x, out


def _giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1) - inter + 1e-7
    iou = inter / union
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(1) + 1e-7
    return iou - (hull - union) / hull, iou


def _targets(targets: list, points: np.ndarray, strides: np.ndarray):
    from examples.shapes.targets import dense_targets

    pos, boxes, cls = zip(*(dense_targets(points, strides, b, lab) for b, lab in targets))
    return torch.from_numpy(np.stack(pos)), torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(cls))


def _loss(model: YoloV8Shapes, x: torch.Tensor, targets: list, points: np.ndarray, strides: np.ndarray):
    head = model.head
    box, logits = model.raw(x)                              # (b, 64, N), (b, nc, N)
    pos, matched, cls = _targets(targets, points, strides)  # (b, N), (b, N, 4), (b, N)
    logits = logits.transpose(1, 2)                         # (b, N, nc)
    target = torch.zeros_like(logits)
    n_pos = max(int(pos.sum()), 1)
    if pos.any():
        bins = box.view(len(x), 4, REG, -1).permute(0, 3, 1, 2)[pos]           # (P, 4, 16)
        dist = (bins.softmax(-1) * torch.arange(REG, dtype=bins.dtype)).sum(-1)  # (P, 4) stride units
        anchors = head.anchors[0].T.expand(len(x), -1, -1)[pos]                # (P, 2)
        stride = head.strides[0].T.expand(len(x), -1, -1)[pos]                 # (P, 1)
        pred = torch.cat((anchors - dist[:, :2], anchors + dist[:, 2:]), 1) * stride
        gt = matched[pos]
        g, iou = _giou(pred, gt)
        box_loss = (1 - g).sum()
        # DFL: cross-entropy towards the two bins around each true side distance.
        ltrb = torch.cat((anchors - gt[:, :2] / stride, gt[:, 2:] / stride - anchors), 1).clamp(0, REG - 1.01)
        left = ltrb.floor().long()
        wl = left + 1 - ltrb
        logp = bins.log_softmax(-1)
        dfl = -(logp.gather(-1, left[..., None])[..., 0] * wl + logp.gather(-1, left[..., None] + 1)[..., 0] * (1 - wl))
        dfl_loss = dfl.mean(-1).sum()
        idx = pos.nonzero()
        target[idx[:, 0], idx[:, 1], cls[pos]] = iou.detach().clamp(min=0.05)
    else:
        box_loss = dfl_loss = logits.sum() * 0
    p = logits.sigmoid()
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * (p - target).abs().pow(2)
    return (bce.sum() + 2.0 * box_loss + 0.5 * dfl_loss) / n_pos


@torch.no_grad()
def evaluate(model: nn.Module, xs: np.ndarray, targets: list, batch: int = 50) -> dict[str, float]:
    """Labelled mAP of the model's (decoded, NMS'd) detections on letterboxed images."""
    from examples.shapes.data import heldout_map

    model.eval()
    outs = [model(torch.from_numpy(xs[i:i + batch]).float() / 255).numpy() for i in range(0, len(xs), batch)]
    out = np.concatenate(outs).transpose(0, 2, 1)                       # (n, N, 4 + nc)
    c, wh = out[..., :2], out[..., 2:4] / 2
    return heldout_map(np.concatenate((c - wh, c + wh), -1), out[..., 4:], targets)


def train(out: Path, steps: int, batch: int, images: int, heldout: int, lr: float, seed: int) -> dict:
    from examples.shapes.data import HELDOUT_SEED, TRAIN_SEED, make_split
    from examples.shapes.targets import grid

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = time.time()
    train_x, train_t = make_split(images, TRAIN_SEED, SIZE)
    held_x, held_t = make_split(heldout, HELDOUT_SEED, SIZE)
    print(f"data ready in {time.time() - start:.0f} s", flush=True)
    points, strides = grid(SIZE)
    model = build().train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}], lr=lr)
    warmup = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    ema = copy.deepcopy(model).eval().requires_grad_(False)    # Ultralytics-style EMA of the weights
    for step in range(steps):
        idx = rng.integers(0, len(train_x), batch)
        x, tgts = _dihedral(torch.from_numpy(train_x[idx]).float() / 255, [train_t[i] for i in idx], int(rng.integers(8)))
        loss = _loss(model, x.contiguous(), tgts, points, strides)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = 0.999 * (1 - math.exp(-(step + 1) / 200))
            for e, v in zip(ema.state_dict().values(), model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    e.copy_(v)
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f} s", flush=True)
    model = ema
    torch.save(model.state_dict(), out)
    metrics = evaluate(model, held_x, held_t)
    print(f"held-out ({heldout} images, seed {HELDOUT_SEED}) mAP@0.5 {metrics['map50']:.3f} "
          f"mAP@0.5:0.95 {metrics['map50_95']:.3f}; {time.time() - start:.0f} s in all -> {out}", flush=True)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", metavar="OUT.pt", type=Path, required=True, help="where to write the weights")
    ap.add_argument("--steps", type=int, default=1100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=1200, help="generated training images (x8 by flips)")
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train(args.train, args.steps, args.batch, args.images, args.heldout, args.lr, args.seed)


if __name__ == "__main__":
    main()
