"""One interface over the dataset layouts users keep: COCO, Pascal VOC, YOLO txt, image folder.

A dataset is a list of `Item`s (image path, boxes xyxy in pixels, class indices) and an
ordered list of class names. Readers check annotations strictly (an error names the file
and the line or field); images are decoded lazily, and one that cannot be decoded is
skipped with a warning and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deployer.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Item:
    image_path: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    size: tuple[int, int] | None = None   # (width, height) when the annotation gives it


@dataclass
class Dataset:
    classes: list[str]
    items: list[Item]
    labelled: bool
    source: str
    format: str
    skipped: list[str] = field(default_factory=list)

    def images(self, limit: int | None = None):
        """Yield (item, RGB image) in order, skipping images that cannot be decoded."""
        count = 0
        for item in self.items:
            if limit is not None and count >= limit:
                return
            try:
                with Image.open(item.image_path) as im:
                    image = im.convert("RGB")
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                self.skipped.append(str(item.image_path))
                warnings.warn(f"{item.image_path}: cannot decode image, skipped ({exc})", stacklevel=2)
                continue
            count += 1
            yield item, image


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def detect_format(path: Path) -> str:
    if path.is_file() and path.suffix == ".json":
        return "coco"
    if not path.is_dir():
        raise UserError(f"{path}: not a dataset folder or COCO .json file")
    if (path / "annotations.json").is_file():
        return "coco"
    if (path / "Annotations").is_dir():
        return "voc"
    if (path / "labels").is_dir() and (path / "images").is_dir():
        return "yolo"
    if list_images(path):
        return "folder"
    raise UserError(f"{path}: cannot tell the dataset format (no annotations.json, Annotations/, "
                    "images/+labels/ or image files); pass --from coco|voc|yolo|folder")


def open_dataset(path: str | Path, fmt: str | None = None) -> Dataset:
    from deployer.datasets import coco, folder, voc, yolo

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: dataset not found")
    fmt = fmt or detect_format(path)
    readers = {"coco": coco.read, "voc": voc.read, "yolo": yolo.read, "folder": folder.read}
    if fmt not in readers:
        raise UserError(f"unknown dataset format '{fmt}' (known: {', '.join(readers)})")
    return readers[fmt](path)


def write_dataset(dataset: Dataset, dst: str | Path, fmt: str) -> int:
    """Write `dataset` in layout `fmt` under `dst`, copying images; returns the image count."""
    from deployer.datasets import coco, voc, yolo

    writers = {"coco": coco.write, "voc": voc.write, "yolo": yolo.write}
    if fmt not in writers:
        raise UserError(f"cannot write dataset format '{fmt}' (writable: {', '.join(writers)})")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    return writers[fmt](dataset, dst)


def copy_image(item: Item, image: Image.Image, dst_folder: Path) -> tuple[str, int, int]:
    """Copy an image file as is (no recompression); returns (file name, width, height)."""
    dst_folder.mkdir(parents=True, exist_ok=True)
    target = dst_folder / item.image_path.name
    if target.resolve() != item.image_path.resolve():
        target.write_bytes(item.image_path.read_bytes())
    return target.name, image.width, image.height
