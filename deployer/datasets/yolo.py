"""YOLO txt labels (one 'class cx cy w h' line per box, normalised to 0..1), in two layouts:
flat (images/ and labels/ with classes.txt, or a data.yaml giving only names) and Ultralytics'
(data.yaml naming train/val/test splits; labels found by `ultralytics.label_path`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deployer.datasets import ultralytics
from deployer.datasets.base import OUTSIDE, Dataset, Item, copy_image, image_size, outside, read_text
from deployer.errors import UserError


def _classes(root: Path, data: ultralytics.DataYaml | None) -> list[str]:
    txt = root / "classes.txt"
    listed = [x.strip() for x in read_text(txt, "one class name per line").splitlines() if x.strip()] \
        if txt.is_file() else None
    if data is not None and data.names is not None:
        # data.yaml decides, as in Ultralytics; a classes.txt that disagrees is a stale copy
        # whose order would silently relabel every box.
        if listed is not None and listed != data.names:
            raise UserError(f"{txt}: its classes ({', '.join(listed[:6])}) differ from {data.file}'s names "
                            f"({', '.join(data.names[:6])}); remove the stale one")
        return data.names
    if listed is not None:
        return listed
    if data is not None:
        raise UserError(f"{data.file}: field 'names' is missing: list the class names (or add classes.txt)")
    raise UserError(f"{root}: a YOLO dataset needs classes.txt or data.yaml with 'names'")


def _images(path: Path, root: Path, data: ultralytics.DataYaml | None, split: str | None) -> list[Path]:
    if data is not None and data.splits:
        chosen = [split] if split else list(data.splits)
        # An image in two splits (a yaml with train and val on one folder) is one image.
        return list(dict.fromkeys(p for s in chosen for p in ultralytics.split_images(data, s)))
    if split:
        raise UserError(f"{path}: no split '{split}': this YOLO dataset has no data.yaml naming train/val/test")
    if not (root / "images").is_dir():
        raise UserError(f"{root}: no images/ folder; a YOLO dataset keeps its images in images/ "
                        "(or names its splits in data.yaml)")
    return ultralytics.find_images(root / "images")


class _Unfit(ValueError):
    """A label line of numbers that make no box, with the reason."""


def _row(parts: list[str], pose: bool) -> tuple[int, float, float, float, float]:
    """(class, cx, cy, w, h) of a label line, read the way Ultralytics' detection training reads
    it: `class cx cy w h`; with keypoints (data.yaml's kpt_shape), the box before them; a
    segmentation polygon `class x1 y1 x2 y2 x3 y3 ...` (3 points or more) as the box around it.
    ValueError for anything else."""
    if len(parts) == 5 or (pose and len(parts) > 5):
        return int(parts[0]), *map(float, parts[1:5])
    if len(parts) >= 7 and len(parts) % 2 == 1:
        xs, ys = [float(v) for v in parts[1::2]], [float(v) for v in parts[2::2]]
        if not all(0 <= v <= 1 for v in xs + ys):   # also false for nan
            raise _Unfit("polygon points must be normalised to 0..1")
        x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
        return int(parts[0]), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    raise ValueError


def _labels(label_file: Path, classes: list[str], pose: bool = False) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for n, line in enumerate(read_text(label_file, "one 'class cx cy w h' line per box").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, cx, cy, w, h = _row(line.split(), pose)
        except ValueError as exc:   # not numbers (float, int), or _Unfit
            why = f" ({exc})" if isinstance(exc, _Unfit) else ""
            raise UserError(f"{label_file}: line {n}: expected 'class cx cy w h' (or a segmentation polygon 'class "
                            f"x1 y1 x2 y2 x3 y3 ...'), got {line!r}{why}") from None
        if not 0 <= cls < len(classes):
            raise UserError(f"{label_file}: line {n}: class {cls} is not in 0..{len(classes) - 1}")
        if not all(0 <= v <= 1 for v in (cx, cy, w, h)):   # also false for nan
            raise UserError(f"{label_file}: line {n}: cx, cy, w, h must be normalised to 0..1 (w, h >= 0), "
                            f"got {line.strip()!r}")
        if outside(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1.0, 1.0):
            raise UserError(f"{label_file}: line {n}: the box {line.strip()!r} reaches outside the image "
                            f"(edges {cx - w / 2:.3f}..{cx + w / 2:.3f}, {cy - h / 2:.3f}..{cy + h / 2:.3f}, more "
                            f"than {OUTSIDE:.0%} beyond 0..1)")
        rows.append((cls, cx, cy, w, h))
    return rows


def _item(image_path: Path, classes: list[str], pose: bool = False) -> Item:
    label_file = ultralytics.label_path(image_path)
    rows = _labels(label_file, classes, pose) if label_file.is_file() else []
    size = image_size(image_path) if rows else None  # normalised boxes need the image size
    if size is None:  # no boxes, or undecodable: images() skips it later with a warning
        return Item(image_path)
    w, h = size
    boxes = [[(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h] for _, cx, cy, bw, bh in rows]
    return Item(image_path, np.array(boxes, np.float32).reshape(-1, 4), np.array([r[0] for r in rows], np.int64), size)


def read(path: Path, split: str | None = None) -> Dataset:
    yaml_file = ultralytics.find_yaml(path)
    data = ultralytics.load(yaml_file) if yaml_file else None
    root = yaml_file.parent if yaml_file else path
    classes = _classes(root, data)
    images = _images(path, root, data, split)
    if images and not any(ultralytics.label_path(p).is_file() for p in images):
        # Every image a background image is a layout not found, not a dataset: say where
        # the labels were looked for (Ultralytics' rule: the last images/ becomes labels/).
        warnings.warn(f"{path}: none of its {len(images)} images has a label file, so all are read as background "
                      f"images (looked for {ultralytics.label_path(images[0])} for {images[0]}, and so on); put "
                      "the .txt labels there", stacklevel=2)
    items = [_item(p, classes, bool(data and data.pose)) for p in images]
    return Dataset(classes, items, labelled=True, source=str(path), format="yolo", split=split or "")


def write(dataset: Dataset, dst: Path) -> int:
    (dst / "labels").mkdir(parents=True, exist_ok=True)
    (dst / "classes.txt").write_text("".join(f"{c}\n" for c in dataset.classes))
    (dst / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames:\n"
                                   + "".join(f"  {i}: {c}\n" for i, c in enumerate(dataset.classes)))
    count = 0
    for item, image in dataset.images():
        name, w, h = copy_image(item, image, dst / "images")
        lines = []
        for (x1, y1, x2, y2), label in zip(item.boxes.astype(float), item.labels):
            lines.append(f"{int(label)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                         f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
        (dst / "labels" / (Path(name).stem + ".txt")).write_text("".join(lines))
        count += 1
    return count
