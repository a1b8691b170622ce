"""Pascal VOC: Annotations/*.xml beside JPEGImages/, class order in labels.txt when present.

Splits are the one-id-per-line lists in ImageSets/Main/ (train.txt, val.txt, trainval.txt,
test.txt, CVAT's default.txt); the two-column per-class lists beside them (cat_train.txt) are
not splits. Objects marked <difficult>1 are left out of the labels, as Ultralytics' VOC
conversion does (VOC's own evaluation ignores them; counting them as misses would charge
every model for boxes their annotators found doubtful)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from deployer.datasets.base import OUTSIDE, Dataset, Item, copy_image, outside, read_text
from deployer.errors import UserError

LISTS = ("ImageSets", "Main")


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise UserError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(node, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise UserError(f"{where}: <{tag}> is not a finite number: {text!r}")
    return value


def _split_lists(path: Path) -> dict[str, Path]:
    folder = path.joinpath(*LISTS)
    if not folder.is_dir():
        return {}
    found = {}
    for txt in sorted(folder.glob("*.txt")):
        try:   # the first line tells (VOC2012 holds 60-odd lists of up to 11 540 lines: not read whole)
            with txt.open(encoding="utf-8") as lines:
                first = next((ln for ln in lines if ln.strip()), "")
        except (OSError, UnicodeDecodeError):
            continue   # not a list of ids: not a split (reading the split names it if asked)
        if len(first.split()) == 1:
            found[txt.stem] = txt
    return found


def splits(path: Path) -> list[str]:
    """The split lists of a VOC folder, by name."""
    return list(_split_lists(Path(path)))


def _annotation_files(path: Path, split: str | None) -> list[Path]:
    if not split:
        return sorted((path / "Annotations").glob("*.xml"))
    listing = _split_lists(path)[split]   # open_dataset has checked that the split exists
    files = []
    for n, line in enumerate(read_text(listing, "one image id per line").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise UserError(f"{listing}: line {n}: expected one image id, got {line!r}")
        xml = path / "Annotations" / f"{parts[0]}.xml"
        if not xml.is_file():
            raise UserError(f"{listing}: line {n}: image id {parts[0]!r} has no annotation file {xml}")
        files.append(xml)
    return list(dict.fromkeys(files))


def _size(root, xml: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    wh = (int(_number(size, "width", f"{xml}: <size>")), int(_number(size, "height", f"{xml}: <size>")))
    if min(wh) <= 0:   # some tools write 0 x 0 when they did not read the image: no size then
        return None
    return wh


def read(path: Path, split: str | None = None) -> Dataset:
    label_file = path / "labels.txt"
    classes = [x.strip() for x in read_text(label_file, "one class name per line").splitlines() if x.strip()] \
        if label_file.is_file() else []
    fixed = bool(classes)
    image_dir = path / "JPEGImages"
    parsed, difficult = [], 0
    for xml in _annotation_files(path, split):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise UserError(f"{xml}: malformed XML (line {exc.position[0]}): {exc}") from None
        file_name = _text(root, "filename", str(xml))
        wh = _size(root, xml)
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
            if wh and outside(*box, *wh):
                raise UserError(f"{where}: <bndbox> {box} lies outside its {wh[0]} x {wh[1]} image (<size>) by "
                                f"more than {OUTSIDE:.0%} of its size")
            if name not in classes:
                if fixed:
                    raise UserError(f"{where}: class '{name}' is not in {label_file}")
                classes.append(name)
            if (obj.findtext("difficult") or "0").strip() == "1":
                difficult += 1
                continue
            objects.append((box, name))
        parsed.append((image_dir / file_name, wh, objects, str(xml)))
    if not fixed:
        classes.sort()
    items = [Item(p, np.array([b for b, _ in objs], np.float32).reshape(-1, 4),
                  np.array([classes.index(n) for _, n in objs], np.int64), wh, origin=origin)
             for p, wh, objs, origin in parsed]
    return Dataset(classes, items, labelled=True, source=str(path), format="voc", split=split or "",
                   left_out=difficult)


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
    # The split converted keeps its name; a whole dataset is VOC's trainval (all annotated images).
    (dst / "ImageSets" / "Main" / f"{dataset.split or 'trainval'}.txt").write_text("".join(f"{n}\n" for n in names))
    return len(names)
