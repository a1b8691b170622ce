"""A synthetic shapes detection dataset, deterministic from a seed.

Images hold several shapes (circle, square, triangle, star) of varied size, colour and
rotation on textured backgrounds (smoothed noise, gradients, stripes, speckle), with
partial occlusion where shapes overlap. No download: everything is drawn here with PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star")


@dataclass
class Sample:
    image: Image.Image
    boxes: np.ndarray      # (n, 4) float32 xyxy in pixels
    labels: np.ndarray     # (n,) int64 indices into CLASSES
    file_name: str


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = rng.integers(4)
    base = rng.uniform(0, 255, size=3)
    if kind == 0:  # smoothed colour noise, like out-of-focus clutter
        small = rng.uniform(0, 255, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        return img.filter(ImageFilter.GaussianBlur(2))
    if kind == 1:  # linear gradient between two colours
        other = rng.uniform(0, 255, size=3)
        t = np.linspace(0, 1, w)[None, :, None]
        arr = base * (1 - t) + other * t
        arr = np.broadcast_to(arr, (h, w, 3))
    elif kind == 2:  # stripes at a random angle
        other = rng.uniform(0, 255, size=3)
        yy, xx = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        s = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / period * 2 * math.pi) > 0)[..., None]
        arr = np.where(s, base, other)
    else:  # flat colour
        arr = np.broadcast_to(base, (h, w, 3))
    # Sensor-like speckle on every background.
    arr = arr + rng.normal(0, rng.uniform(2, 14), size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _polygon(cls: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if cls == "square":
        pts = [(math.cos(angle + math.pi / 4 + k * math.pi / 2), math.sin(angle + math.pi / 4 + k * math.pi / 2))
               for k in range(4)]
    elif cls == "triangle":
        pts = [(math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    else:  # star: 5 points, inner radius 0.45
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = angle + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    return [(cx + r * x, cy + r * y) for x, y in pts]


def _colour(rng: np.random.Generator, avoid: np.ndarray) -> tuple[int, int, int]:
    # Keep the shape distinguishable from the local background colour.
    for _ in range(20):
        c = rng.integers(0, 256, size=3)
        if np.abs(c - avoid).sum() > 120:
            break
    return tuple(int(v) for v in c)


def make_sample(rng: np.random.Generator, index: int, size: tuple[int, int] | None = None,
                max_objects: int = 6) -> Sample:
    w, h = size or (int(rng.integers(192, 321)), int(rng.integers(160, 257)))
    img = _background(rng, w, h)
    bg = np.asarray(img).reshape(-1, 3).mean(0)
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(1, max_objects + 1))
    masks, labels, areas = [], [], []
    for _ in range(n):
        cls_idx = int(rng.integers(len(CLASSES)))
        cls = CLASSES[cls_idx]
        r = float(rng.uniform(0.05, 0.22) * min(w, h))
        cx = float(rng.uniform(r * 0.6, w - r * 0.6))
        cy = float(rng.uniform(r * 0.6, h - r * 0.6))
        angle = float(rng.uniform(0, 2 * math.pi))
        colour = _colour(rng, bg)
        mask = Image.new("L", (w, h), 0)
        mdraw = ImageDraw.Draw(mask)
        if cls == "circle":
            rx, ry = r, r * float(rng.uniform(0.85, 1.0))
            bbox = [cx - rx, cy - ry, cx + rx, cy + ry]
            draw.ellipse(bbox, fill=colour)
            mdraw.ellipse(bbox, fill=255)
        else:
            pts = _polygon(cls, cx, cy, r, angle)
            draw.polygon(pts, fill=colour)
            mdraw.polygon(pts, fill=255)
        m = np.asarray(mask) > 0
        # Later shapes occlude earlier ones.
        masks = [prev & ~m for prev in masks]
        masks.append(m)
        labels.append(cls_idx)
        areas.append(m.sum())
    keep_boxes, keep_labels = [], []
    for m, lab, area in zip(masks, labels, areas):
        ys, xs = np.nonzero(m)
        if len(xs) < 30 or len(xs) < 0.35 * area:
            continue  # mostly hidden behind later shapes: not labelled
        keep_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        keep_labels.append(lab)
    return Sample(image=img, boxes=np.array(keep_boxes, np.float32).reshape(-1, 4),
                  labels=np.array(keep_labels, np.int64), file_name=f"{index:06d}.jpg")


def generate(count: int, seed: int, start: int = 0):
    """Yield `count` samples; the same seed always gives the same images."""
    for i in range(start, start + count):
        # One generator per image: any image can be made alone and in any order.
        rng = np.random.default_rng([seed, i])
        yield make_sample(rng, i)
