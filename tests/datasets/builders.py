"""Small datasets written on the fly: PIL images of known sizes and hand-written annotations."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 80, 40)).save(path)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def ultralytics(root: Path, yaml: str | None = None) -> Path:
    """train: a.jpg (200x100, 2 boxes), b.png (64x64, no label file); val: c.jpg (80x60, 1 box)."""
    image(root / "images/train/a.jpg", 200, 100)
    image(root / "images/train/b.png", 64, 64)
    image(root / "images/val/c.jpg", 80, 60)
    text(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n")
    text(root / "labels/val/c.txt", "1 0.5 0.5 0.5 0.5\n")
    text(root / "data.yaml", yaml if yaml is not None else
         "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    return root
