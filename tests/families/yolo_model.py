"""YOLO-layout sources for the family tests: the bundled example's trained detector with its
outputs laid out as Ultralytics heads give them (the ops of a YOLOv8 graph itself are covered
by tests/backends/torch_detectors.py), and a user's factory wrapping a loaded TorchScript."""

from __future__ import annotations

import torch
from torch import nn


class Wrapped(nn.Module):
    """A user's factory around a loaded TorchScript YOLO: boxes and scores as two outputs."""

    def __init__(self, path):
        super().__init__()
        self.model = torch.jit.load(str(path), map_location="cpu")

    def forward(self, x):
        y = self.model(x)
        return y[:, :4].transpose(1, 2), y[:, 4:].transpose(1, 2)


class ShapesAsYOLO(nn.Module):
    """The bundled example's trained detector with its outputs laid out as a YOLO head: real
    detections to measure detection parity on, in the `yolo` head's two layouts."""

    def __init__(self, layout: str = "v8"):
        super().__init__()
        from pathlib import Path

        from examples.shapes.model import build as build_shapes

        self.det = build_shapes()
        weights = Path(__file__).resolve().parents[2] / "examples" / "shapes" / "shapes.pt"
        self.det.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.det.eval()
        self.layout = layout

    def forward(self, x):
        boxes, scores = self.det(x)                       # (1, N, 4) xyxy, (1, N, nc)
        cxcywh = torch.cat(((boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]), -1)
        if self.layout == "v5":
            obj = scores.max(-1, keepdim=True).values.clamp_min(1e-6)
            return torch.cat((cxcywh, obj, scores / obj), -1)         # (1, N, 5 + nc)
        return torch.cat((cxcywh, scores), -1).transpose(1, 2)      # (1, 4 + nc, N)


def shapes_yolo_v8() -> nn.Module:
    return ShapesAsYOLO("v8").eval()


def shapes_yolo_v5() -> nn.Module:
    return ShapesAsYOLO("v5").eval()
