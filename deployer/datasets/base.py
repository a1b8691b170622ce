"""One interface over the dataset layouts users keep: COCO, Pascal VOC, YOLO txt (flat or
Ultralytics' data.yaml with splits), Open Images CSV boxes, image folder.

A dataset is a list of `Item`s (image path, boxes xyxy in pixels, class indices) and an
ordered list of class names. Readers check annotations strictly (an error names the file
and the line or field); images are decoded lazily, and one that cannot be decoded is
skipped with a warning and counted. A dataset without images is an error, never an empty
success.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deployer.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SkippedImage(UserWarning):
    """An image a dataset names that cannot be read (missing, undecodable): skipped, counted."""


@dataclass
class Item:
    image_path: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    size: tuple[int, int] | None = None   # (width, height) when the annotation gives it
    origin: str = ""                       # the record naming the image (file, entry), for messages


@dataclass
class Dataset:
    classes: list[str]
    items: list[Item]
    labelled: bool
    source: str
    format: str
    skipped: list[str] = field(default_factory=list)
    split: str = ""                # the split read, for datasets that have splits
    left_out: int = 0              # objects not taken as labels by the format's rule (VOC difficult)

    @property
    def name(self) -> str:
        """The dataset as an error message names it."""
        return f"{self.source} (split '{self.split}')" if self.split else self.source

    def images(self, limit: int | None = None):
        """Yield (item, RGB image) in order, skipping images that cannot be decoded."""
        count = 0
        for item in self.items:
            if limit is not None and count >= limit:
                return
            try:
                with Image.open(item.image_path) as im:
                    image = to_rgb(im)
            except FileNotFoundError:
                self.skipped.append(str(item.image_path))
                named = f" (named by {item.origin})" if item.origin else ""
                warnings.warn(f"{item.image_path}: image file not found{named}, skipped", SkippedImage, stacklevel=2)
                continue
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                self.skipped.append(str(item.image_path))
                warnings.warn(f"{item.image_path}: cannot decode image, skipped ({exc})", SkippedImage, stacklevel=2)
                continue
            count += 1
            yield item, image


# What each reader needs to find images: the hint of the error for an empty dataset.
# A box may overhang its image by this share of the image's side (labelling tools round and
# pad); beyond it, the label is wrong and the reader says where.
OUTSIDE = 0.02


def outside(x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> bool:
    """Whether a box in pixels leaves its image by more than OUTSIDE of the image's size."""
    mx, my = OUTSIDE * width, OUTSIDE * height
    return x1 < -mx or y1 < -my or x2 > width + mx or y2 > height + my


READ_FORMATS = {
    "coco": "entries in the COCO json's 'images'",
    "voc": "Annotations/*.xml files",
    "yolo": "image files under images/ (or in the folders data.yaml's train/val/test name)",
    "openimages": "<ImageID>.jpg files in images/ beside the boxes CSV",
    "folder": f"image files ({', '.join(IMAGE_SUFFIXES)}) in the folder",
}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def to_rgb(im: Image.Image) -> Image.Image:
    """An image as the training frameworks see it (Ultralytics' cv2.imread, torchvision's
    read_image): EXIF orientation applied; 16-bit grey scaled to 8 bits (not clipped); palette,
    grey and alpha images as RGB (alpha dropped)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(im, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0   # 16 bits -> 8, as cv2 and PIL's own I;16 -> L
        im = Image.fromarray(np.clip(values / scale, 0, 255).round().astype(np.uint8), "L")
    elif im.mode == "P":
        im = im.convert("RGBA")   # a palette's transparency is resolved before the alpha is dropped
    return im.convert("RGB")


# EXIF orientations that turn the picture a quarter: width and height swap.
QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF orientation applied: labels are drawn on that), from
    the header only; None when undecodable (images() skips it later)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112) in QUARTER_TURNS else (w, h)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def read_text(path: Path, expected: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); expected {expected}") from None


def detect_format(path: Path) -> str:
    from deployer.datasets import openimages, ultralytics

    if path.is_file() and path.suffix == ".json":
        return "coco"
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if path.is_file() and path.suffix.lower() == ".csv":
        return "openimages"
    if not path.is_dir():
        raise UserError(f"{path}: not a dataset folder, COCO .json, Ultralytics data.yaml or Open Images .csv file")
    if (path / "annotations.json").is_file():
        return "coco"
    if (path / "Annotations").is_dir():
        return "voc"
    if ultralytics.find_yaml(path) or ((path / "labels").is_dir() and (path / "images").is_dir()):
        return "yolo"
    if openimages.find_boxes_csv(path):
        return "openimages"
    if list_images(path):
        return "folder"
    raise UserError(f"{path}: cannot tell the dataset format (no annotations.json, Annotations/, data.yaml, "
                    f"images/+labels/, Open Images boxes CSV or image files); pass --from {'|'.join(READ_FORMATS)}")


# Where splits come from, for messages about a dataset without them.
SPLITS_FROM = "splits come from an Ultralytics data.yaml or a Pascal VOC ImageSets/Main/<split>.txt"


def dataset_splits(path: str | Path, fmt: str | None = None) -> list[str]:
    """The splits a dataset declares (an Ultralytics data.yaml's train/val/test, a Pascal VOC
    folder's ImageSets/Main lists); [] for a dataset without splits or not a dataset at all
    (reading it says why)."""
    from deployer.datasets import ultralytics, voc

    path = Path(path)
    if fmt is None:
        try:
            fmt = detect_format(path) if path.exists() else None
        except UserError:
            return []
    return {"yolo": ultralytics.splits, "voc": voc.splits}.get(fmt, lambda _: [])(path)


def splits_optional(path: str | Path) -> bool:
    """Whether a dataset with splits may be read whole when the default split is missing: a VOC
    folder's ImageSets lists are optional extras (CVAT writes only default.txt), while an
    Ultralytics data.yaml's splits are the dataset."""
    try:
        return detect_format(Path(path)) == "voc"
    except UserError:
        return False


def open_dataset(path: str | Path, fmt: str | None = None, split: str | None = None) -> Dataset:
    """The whole dataset (every split), or one split of a dataset that has splits."""
    from deployer.datasets import coco, folder, openimages, voc, yolo

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: dataset not found")
    fmt = fmt or detect_format(path)
    readers = {"coco": coco.read, "voc": voc.read, "yolo": yolo.read, "openimages": openimages.read,
               "folder": folder.read}
    if fmt not in readers:
        raise UserError(f"unknown dataset format '{fmt}' (known: {', '.join(readers)})")
    have = dataset_splits(path, fmt) if split else []
    if split and split not in have:
        raise UserError(f"{path}: no split '{split}' " + (f"(it has: {', '.join(have)})" if have else
                        f"(this {fmt} dataset has none; {SPLITS_FROM})") + "; choose one of its splits or leave "
                        "out the split")
    dataset = readers[fmt](path, split) if split else readers[fmt](path)
    if not dataset.items:
        raise UserError(f"{dataset.name}: no images ({fmt} dataset); expected {READ_FORMATS[fmt]}")
    return dataset


def write_dataset(dataset: Dataset, dst: str | Path, fmt: str) -> int:
    """Write `dataset` in layout `fmt` under `dst`, copying images; returns the image count."""
    from deployer.datasets import coco, voc, yolo

    writers = {"coco": coco.write, "voc": voc.write, "yolo": yolo.write}
    if fmt not in writers:
        raise UserError(f"cannot write dataset format '{fmt}' (writable: {', '.join(writers)})")
    _check_unique_names(dataset, fmt)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    return writers[fmt](dataset, dst)


def _check_unique_names(dataset: Dataset, fmt: str) -> None:
    # Every writer keeps one images folder: two images of one name (train/1.jpg, val/1.jpg)
    # would silently become one.
    seen: dict[str, Path] = {}
    for item in dataset.items:
        first = seen.setdefault(item.image_path.name, item.image_path)
        if first != item.image_path:
            raise UserError(f"{dataset.name}: images {first} and {item.image_path} have the same file name, and "
                            f"a {fmt} dataset keeps one images folder; convert one split at a time (--split) "
                            "or rename one of them")


def copy_image(item: Item, image: Image.Image, dst_folder: Path) -> tuple[str, int, int]:
    """Copy an image file as is (no recompression); returns (file name, width, height)."""
    dst_folder.mkdir(parents=True, exist_ok=True)
    target = dst_folder / item.image_path.name
    if target.resolve() != item.image_path.resolve():
        target.write_bytes(item.image_path.read_bytes())
    return target.name, image.width, image.height
