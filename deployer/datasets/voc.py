"""Pascal VOC: Annotations/*.xml beside JPEGImages/, class order in labels.txt when present."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from deployer.datasets.base import Dataset, Item, copy_image, read_text
from deployer.errors import UserError


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise UserError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(node, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}: <{tag}> is not a number: {text!r}") from None


def read(path: Path) -> Dataset:
    label_file = path / "labels.txt"
    classes = [x.strip() for x in read_text(label_file, "one class name per line").splitlines() if x.strip()] \
        if label_file.is_file() else []
    fixed = bool(classes)
    image_dir = path / "JPEGImages"
    parsed = []
    for xml in sorted((path / "Annotations").glob("*.xml")):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise UserError(f"{xml}: malformed XML (line {exc.position[0]}): {exc}") from None
        file_name = _text(root, "filename", str(xml))
        size = root.find("size")
        wh = (int(_number(size, "width", f"{xml}: <size>")), int(_number(size, "height", f"{xml}: <size>"))) \
            if size is not None else None
        objects = []
        for k, obj in enumerate(root.findall("object")):
            where = f"{xml}: <object> {k + 1}"
            name = _text(obj, "name", where)
            bb = obj.find("bndbox")
            if bb is None:
                raise UserError(f"{where}: missing <bndbox>")
            box = [_number(bb, t, f"{where} <bndbox>") for t in ("xmin", "ymin", "xmax", "ymax")]
            if box[2] < box[0] or box[3] < box[1]:
                raise UserError(f"{where}: <bndbox> has xmax < xmin or ymax < ymin")
            if name not in classes:
                if fixed:
                    raise UserError(f"{where}: class '{name}' is not in {label_file}")
                classes.append(name)
            objects.append((box, name))
        parsed.append((image_dir / file_name, wh, objects))
    if not fixed:
        classes.sort()
    items = [Item(p, np.array([b for b, _ in objs], np.float32).reshape(-1, 4),
                  np.array([classes.index(n) for _, n in objs], np.int64), wh) for p, wh, objs in parsed]
    return Dataset(classes, items, labelled=True, source=str(path), format="voc")


def write(dataset: Dataset, dst: Path) -> int:
    (dst / "Annotations").mkdir(parents=True, exist_ok=True)
    (dst / "labels.txt").write_text("".join(f"{c}\n" for c in dataset.classes))
    names = []
    for item, image in dataset.images():
        name, w, h = copy_image(item, image, dst / "JPEGImages")
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = name
        size = ET.SubElement(root, "size")
        for tag, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
        for box, label in zip(item.boxes, item.labels):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = dataset.classes[int(label)]
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bb, tag).text = f"{float(v):.1f}"
        ET.indent(root)
        ET.ElementTree(root).write(dst / "Annotations" / (Path(name).stem + ".xml"), encoding="utf-8")
        names.append(Path(name).stem)
    (dst / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (dst / "ImageSets" / "Main" / "all.txt").write_text("".join(f"{n}\n" for n in names))
    return len(names)
