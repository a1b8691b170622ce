"""The model's preprocessing, applied once in numpy so every runtime sees the same tensor.

The same code serves training the example, calibration feeds and parity inputs: a model
deployed with a different resize than it was trained with is a silent accuracy bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from deployer.spec import InputSpec, Preprocess


@dataclass
class Transform:
    """Maps network-input pixel coordinates back to the original image."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        return out

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = out[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.scale_y + self.pad_y
        return out


def resize(image: Image.Image, width: int, height: int, mode: str, pad_value: float) -> tuple[np.ndarray, Transform]:
    """Resize an RGB image to (height, width, 3) uint8; letterbox keeps the aspect ratio, centred."""
    image = image.convert("RGB")
    w0, h0 = image.size
    if mode == "stretch":
        out = np.asarray(image.resize((width, height), Image.BILINEAR))
        return out, Transform(width / w0, height / h0, 0.0, 0.0)
    r = min(width / w0, height / h0)
    nw, nh = max(1, round(w0 * r)), max(1, round(h0 * r))
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas = np.full((height, width, 3), int(round(pad_value)), np.uint8)
    canvas[py:py + nh, px:px + nw] = np.asarray(image.resize((nw, nh), Image.BILINEAR))
    return canvas, Transform(nw / w0, nh / h0, float(px), float(py))


def normalize(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 HWC RGB -> float32 HWC with the spec's channel order, scale, mean and std."""
    x = pixels.astype(np.float32)
    if pre.channel_order == "BGR":
        x = x[..., ::-1]
    x = x / pre.scale
    return ((x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)).astype(np.float32)


def prepare(image: Image.Image, inp: InputSpec, pre: Preprocess) -> tuple[np.ndarray, Transform]:
    """An image as one batch-1 input tensor in the input's declared layout."""
    pixels, transform = resize(image, inp.width, inp.height, pre.resize, pre.pad_value)
    x = normalize(pixels, pre)
    if inp.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None]), transform
