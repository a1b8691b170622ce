"""ShapesDet: a compact anchor-free one-stage detector (YOLO-style decoupled head).

Backbone of strided conv blocks, a small top-down feature pyramid, and one shared head
per level (strides 8, 16, 32) predicting per grid point the distances to the four box
sides and per-class logits. Decoding happens in the graph, so the exported model gives
`boxes` (1, N, 4) as xyxy pixels of the network input and `scores` (1, N, C) after the
sigmoid; class-wise NMS is left to the deployment (deployer's parity, CoreML pipeline).
ReLU everywhere: it quantizes cleanly to int8 and runs on every MCU kernel library.
"""

from __future__ import annotations

import torch
from torch import nn

from examples.shapes.targets import grid


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Residual pair of 3x3 convs."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = conv_bn(c, c), conv_bn(c, c)

    def forward(self, x):
        return x + self.b(self.a(x))


class ShapesDet(nn.Module):
    def __init__(self, num_classes: int = 4, image_size: int = 192, width: int = 16):
        super().__init__()
        w = width
        self.num_classes, self.image_size = num_classes, image_size
        self.stem = nn.Sequential(conv_bn(3, w, 3, 2), conv_bn(w, 2 * w, 3, 2))          # /4
        self.s8 = nn.Sequential(conv_bn(2 * w, 4 * w, 3, 2), Block(4 * w))               # /8
        self.s16 = nn.Sequential(conv_bn(4 * w, 6 * w, 3, 2), Block(6 * w))              # /16
        self.s32 = nn.Sequential(conv_bn(6 * w, 8 * w, 3, 2), Block(8 * w))              # /32
        self.lat32, self.lat16, self.lat8 = conv_bn(8 * w, 4 * w, 1), conv_bn(6 * w, 4 * w, 1), conv_bn(4 * w, 4 * w, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse16, self.fuse8 = conv_bn(4 * w, 4 * w), conv_bn(4 * w, 4 * w)
        self.head_stem = nn.Sequential(conv_bn(4 * w, 4 * w), conv_bn(4 * w, 4 * w))
        self.reg = nn.Conv2d(4 * w, 4, 1)
        self.cls = nn.Conv2d(4 * w, num_classes, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # prior 0.01: stable focal-style training start
        nn.init.constant_(self.reg.bias, 0.0)
        self._make_points(image_size)

    def _make_points(self, size: int) -> None:
        points, strides = grid(size)
        self.register_buffer("points", torch.from_numpy(points)[None], persistent=False)        # (1, N, 2)
        self.register_buffer("strides", torch.from_numpy(strides)[None, :, None], persistent=False)  # (1, N, 1)

    def features(self, x):
        c8 = self.s8(self.stem(x))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p32 = self.lat32(c32)
        p16 = self.fuse16(self.lat16(c16) + self.up(p32))
        p8 = self.fuse8(self.lat8(c8) + self.up(p16))
        return p8, p16, p32

    def raw(self, x):
        """Undecoded predictions: distances (1, N, 4) in stride units, logits (1, N, C)."""
        regs, logits = [], []
        for p in self.features(x):
            h = self.head_stem(p)
            regs.append(self.reg(h).flatten(2))
            logits.append(self.cls(h).flatten(2))
        return torch.cat(regs, 2).transpose(1, 2), torch.cat(logits, 2).transpose(1, 2)

    def decode(self, dist, logits):
        # Softplus keeps distances positive without exp's overflow in fp16.
        d = nn.functional.softplus(dist) * self.strides
        xy = self.points
        boxes = torch.cat([xy - d[..., :2], xy + d[..., 2:]], -1)
        return boxes, torch.sigmoid(logits)

    def forward(self, images):
        return self.decode(*self.raw(images))


def build(num_classes: int = 4, image_size: int = 192) -> ShapesDet:
    """Factory used by the model spec (`examples.shapes.model:build`)."""
    torch.manual_seed(0)
    return ShapesDet(num_classes=num_classes, image_size=image_size).eval()
