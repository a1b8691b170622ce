"""Small PyTorch detectors in the shapes real families have, with random weights (no downloads),
as factories for specs (`tests.backends.torch_detectors:<name>`). Imported only in torch
worker processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _seeded_batch_norms(model: nn.Module, seed: int = 3) -> nn.Module:
    """Non-trivial running statistics, so batch norm is not the identity it is at init."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


# ---------------------------------------------------------------------------- MTCNN RNet

class RNet(nn.Module):
    """MTCNN's refinement net (24x24 crops): per-channel PReLU after convolutions and after
    the fully connected layer (the rank-2 PReLU coremltools refuses); raw outputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 28, 3), nn.PReLU(28), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(28, 48, 3), nn.PReLU(48), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(48, 64, 2), nn.PReLU(64))
        self.dense = nn.Linear(64 * 3 * 3, 128)
        self.prelu = nn.PReLU(128)
        self.cls = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)

    def forward(self, x):
        y = self.prelu(self.dense(self.features(x).permute(0, 3, 2, 1).flatten(1)))
        return self.box(y), torch.softmax(self.cls(y), 1)


def mtcnn_rnet():
    torch.manual_seed(0)
    model = RNet()
    with torch.no_grad():   # per-channel slopes that differ (PReLU's init is 0.25 everywhere)
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return model.eval()


# ---------------------------------------------------------------------------- YOLOv8-style

class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c)
        self.cv2 = Conv((2 + n) * self.c, c2)
        self.m = nn.ModuleList(Bottleneck(self.c) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c1 // 2), Conv(c1 // 2 * 4, c2)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class DFL(nn.Module):
    """Distribution focal loss decoding: softmax over 16 bins, expectation by a fixed 1x1 conv."""

    def __init__(self, bins=16):
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float).view(1, bins, 1, 1)

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.bins, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class YoloV8Tiny(nn.Module):
    """Backbone (Conv-BN-SiLU, C2f, SPPF), nearest-upsampling neck, decoupled DFL head:
    one output (1, 4 + nc, N) of cx, cy, w, h in input pixels and class scores."""

    def __init__(self, nc=3, size=64):
        super().__init__()
        self.nc, self.reg = nc, 16
        self.b0, self.b1, self.c1 = Conv(3, 8, 3, 2), Conv(8, 16, 3, 2), C2f(16, 16)
        self.b2, self.c2, self.sppf = Conv(16, 32, 3, 2), C2f(32, 32), SPPF(32, 32)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c3 = C2f(48, 16)
        self.box = nn.ModuleList(nn.Sequential(Conv(c, 16, 3), nn.Conv2d(16, 4 * self.reg, 1)) for c in (16, 32))
        self.cls = nn.ModuleList(nn.Sequential(Conv(c, 16, 3), nn.Conv2d(16, nc, 1)) for c in (16, 32))
        self.dfl = DFL(self.reg)
        anchors, strides = [], []
        for stride in (4, 8):
            n = size // stride
            yv, xv = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
            anchors.append(torch.stack((xv, yv), -1).view(-1, 2))
            strides.append(torch.full((n * n, 1), float(stride)))
        self.register_buffer("anchors", torch.cat(anchors).T.unsqueeze(0))
        self.register_buffer("strides", torch.cat(strides).T.unsqueeze(0))

    def forward(self, x):
        p3 = self.c1(self.b1(self.b0(x)))
        p4 = self.sppf(self.c2(self.b2(p3)))
        p3 = self.c3(torch.cat([self.up(p4), p3], 1))
        feats = [torch.cat((self.box[i](f), self.cls[i](f)), 1).flatten(2) for i, f in enumerate((p3, p4))]
        box, cls = torch.cat(feats, 2).split((4 * self.reg, self.nc), 1)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((xywh, cls.sigmoid()), 1)


def yolov8_tiny():
    torch.manual_seed(0)
    return _seeded_batch_norms(YoloV8Tiny())


# ---------------------------------------------------------------------------- torchvision

class SSDLiteRaw(nn.Module):
    """torchvision's SSDlite320 MobileNetV3: backbone + head, without its Python post-processing."""

    def __init__(self):
        super().__init__()
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
        self.backbone, self.head = model.backbone, model.head

    def forward(self, x):
        out = self.head(list(self.backbone(x).values()))
        return out["bbox_regression"], out["cls_logits"]


def ssdlite():
    torch.manual_seed(0)
    return _seeded_batch_norms(SSDLiteRaw())


class RetinaNetHeadOnPyramid(nn.Module):
    """torchvision's RetinaNet head on a small five-level pyramid made from the image by
    strided convolutions and max pooling (its ResNet-50 FPN backbone is too big for a test)."""

    def __init__(self, channels=32, anchors=9, classes=4):
        super().__init__()
        from torchvision.models.detection.retinanet import RetinaNetHead

        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 4, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.down = nn.ModuleList(nn.Conv2d(channels, channels, 3, 2, 1) for _ in range(3))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.head = RetinaNetHead(channels, anchors, classes)

    def forward(self, x):
        levels = [self.stem(x)]
        for conv in self.down:
            levels.append(conv(levels[-1]))
        levels.append(self.pool(levels[-1]))
        out = self.head(levels)
        return out["bbox_regression"], out["cls_logits"]


def retinanet_head():
    torch.manual_seed(0)
    return _seeded_batch_norms(RetinaNetHeadOnPyramid())


class MobileNetV3Blocks(nn.Module):
    """The first blocks of torchvision's MobileNetV3 (SSDlite's backbone): hardswish,
    squeeze-excitation with hardsigmoid, depthwise convolutions; two raw outputs."""

    def __init__(self):
        super().__init__()
        from torchvision.models import mobilenet_v3_small

        self.features = mobilenet_v3_small(weights=None).features[:5]
        self.head = nn.Conv2d(40, 8, 1)

    def forward(self, x):
        y = self.head(self.features(x))
        return y, y.mean((2, 3))


def mobilenet_v3_blocks():
    torch.manual_seed(0)
    return _seeded_batch_norms(MobileNetV3Blocks())


class Resampling(nn.Module):
    """What torch detectors resample and normalise with, beyond the families above: bilinear
    (both corner modes) and nearest interpolation to scales and sizes, a transposed
    convolution (YOLOv8-seg's mask prototypes, CenterNet's upsampling), ceil-mode pooling,
    reflect and replicate padding, layer and instance norm, GELU, ELU, leaky ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.deconv = nn.ConvTranspose2d(8, 8, 3, 2, 1, output_padding=1)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        y = self.conv(x)
        up = (F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False) + self.deconv(y)
              + F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
              + F.interpolate(y, scale_factor=2, mode="nearest"))
        sized = F.interpolate(y, size=(13, 11), mode="bilinear") + F.interpolate(y, size=(13, 11), mode="nearest")
        pooled = (F.avg_pool2d(y, 3, 2, 1, ceil_mode=True, count_include_pad=False)
                  + F.max_pool2d(F.pad(y, (1, 2, 1, 2), mode="reflect"), 3, 2, ceil_mode=True)
                  + F.avg_pool2d(F.pad(y, (1, 2, 1, 2), mode="replicate"), 3, 2, ceil_mode=True))
        act = F.gelu(F.instance_norm(y)) + F.elu(y) + F.leaky_relu(y, 0.1)
        normed = self.norm(act.permute(0, 2, 3, 1))
        return up, sized, pooled, normed


def resampling():
    torch.manual_seed(0)
    return Resampling().eval()
