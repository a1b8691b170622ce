"""COCO detection JSON: `annotations.json` with images/ beside it (or a bare .json file).

`file_name` may hold subfolders (`val2017/000001.jpg`), relative to images/ beside the json
or to the json's folder, never outside that folder.
"""

from __future__ import annotations

import json
import math
import posixpath
from pathlib import Path

import numpy as np

from deployer.datasets.base import OUTSIDE, Dataset, Item, copy_image, outside, read_text
from deployer.errors import UserError


def _field(obj: dict, key: str, kind, where: str):
    if key not in obj:
        raise UserError(f"{where}: missing field '{key}'")
    if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
        raise UserError(f"{where}: field '{key}' has the wrong type ({type(obj[key]).__name__})")
    return obj[key]


def _image_path(base: Path, file_name: str, where: str) -> Path:
    name = file_name.replace("\\", "/")   # written on Windows
    if posixpath.isabs(name) or posixpath.normpath(name).split("/")[0] == "..":
        raise UserError(f"{where}: field 'file_name' {file_name!r} leads outside the dataset folder {base}; "
                        "file names are relative to the json's folder or to images/ beside it")
    candidates = [base / "images" / name, base / name]
    found = next((p for p in candidates if p.is_file()), None)
    # A missing file stays in the list: images() skips it with a warning, like an undecodable one.
    return found or (candidates[0] if (base / "images").is_dir() else candidates[1])


def read(path: Path) -> Dataset:
    ann_file = path / "annotations.json" if path.is_dir() else path
    try:
        doc = json.loads(read_text(ann_file, "a COCO detection JSON file"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{ann_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{ann_file}: expected a COCO object with images, annotations, categories")
    cats = _field(doc, "categories", list, str(ann_file))
    images = _field(doc, "images", list, str(ann_file))
    anns = doc.get("annotations", [])
    cat_ids, classes = {}, []
    for i, c in enumerate(sorted(cats, key=lambda c: c.get("id", 0) if isinstance(c, dict) else 0)):
        where = f"{ann_file}: categories[{i}]"
        if not isinstance(c, dict):
            raise UserError(f"{where}: expected an object")
        cat_id = _field(c, "id", int, where)
        if cat_id in cat_ids:
            raise UserError(f"{where}: category id {cat_id} is used twice (each category needs its own id)")
        cat_ids[cat_id] = len(classes)
        classes.append(_field(c, "name", str, where))
    base = ann_file.parent
    items, by_id, first_index = [], {}, {}
    for i, im in enumerate(images):
        where = f"{ann_file}: images[{i}]"
        if not isinstance(im, dict):
            raise UserError(f"{where}: expected an object")
        image_id = _field(im, "id", int, where)
        if image_id in by_id:   # the annotations of both would land on one image
            raise UserError(f"{where}: id {image_id} is already used by images[{first_index[image_id]}]; "
                            "each image needs its own id")
        first_index[image_id] = i
        size = None
        if "width" in im or "height" in im:   # optional in practice; when given, whole pixels
            size = (_field(im, "width", int, where), _field(im, "height", int, where))
            if min(size) <= 0:
                raise UserError(f"{where}: fields 'width' and 'height' must be positive, got {size[0]} x {size[1]}")
        item = Item(_image_path(base, _field(im, "file_name", str, where), f"{where} (id {image_id})"), size=size,
                    origin=where)
        by_id[image_id] = (item, [], [])
        items.append(item)
    for i, a in enumerate(anns):
        where = f"{ann_file}: annotations[{i}]"
        if not isinstance(a, dict):
            raise UserError(f"{where}: expected an object")
        image_id, cat = _field(a, "image_id", int, where), _field(a, "category_id", int, where)
        bbox = _field(a, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise UserError(f"{where}: field 'bbox' must be [x, y, width, height] (numbers) with width, height >= 0, "
                            f"got {bbox!r}")
        if image_id not in by_id:
            raise UserError(f"{where}: image_id {image_id} is not in 'images'")
        if cat not in cat_ids:
            raise UserError(f"{where}: category_id {cat} is not in 'categories'")
        if a.get("iscrowd", 0):
            continue  # crowd regions are not object instances
        x, y, w, h = (float(v) for v in bbox)
        size = by_id[image_id][0].size
        if size and outside(x, y, x + w, y + h, *size):
            raise UserError(f"{where}: field 'bbox' {bbox!r} lies outside its {size[0]} x {size[1]} image "
                            f"(images[] id {image_id}) by more than {OUTSIDE:.0%} of its size")
        by_id[image_id][1].append([x, y, x + w, y + h])
        by_id[image_id][2].append(cat_ids[cat])
    for item, boxes, labels in by_id.values():
        item.boxes = np.array(boxes, np.float32).reshape(-1, 4)
        item.labels = np.array(labels, np.int64)
    return Dataset(classes, items, labelled=True, source=str(path), format="coco")


def write(dataset: Dataset, dst: Path) -> int:
    images, anns = [], []
    for item, image in dataset.images():
        name, w, h = copy_image(item, image, dst / "images")
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for box, label in zip(item.boxes, item.labels):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(label) + 1,
                         "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                         "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": i + 1, "name": n} for i, n in enumerate(dataset.classes)]}
    (dst / "annotations.json").write_text(json.dumps(doc, indent=1))
    return len(images)
