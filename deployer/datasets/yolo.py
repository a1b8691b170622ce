"""YOLO txt: images/ and labels/ (one 'class cx cy w h' line per box, normalised), classes.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from deployer.datasets.base import Dataset, Item, copy_image, list_images
from deployer.errors import UserError


def _classes(path: Path) -> list[str]:
    txt = path / "classes.txt"
    if txt.is_file():
        return [x.strip() for x in txt.read_text().splitlines() if x.strip()]
    yaml_file = path / "data.yaml"
    if yaml_file.is_file():
        import yaml

        try:
            names = (yaml.safe_load(yaml_file.read_text()) or {}).get("names")
        except yaml.YAMLError as exc:
            raise UserError(f"{yaml_file}: not valid YAML: {exc}") from None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise UserError(f"{yaml_file}: field 'names' must be a list or a mapping of class names")
    raise UserError(f"{path}: a YOLO dataset needs classes.txt or data.yaml with 'names'")


def read(path: Path) -> Dataset:
    classes = _classes(path)
    items = []
    for image_path in list_images(path / "images"):
        label_file = path / "labels" / (image_path.stem + ".txt")
        rows = []
        if label_file.is_file():
            for n, line in enumerate(label_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
                    if len(parts) != 5:
                        raise ValueError
                except (ValueError, IndexError):
                    raise UserError(f"{label_file}: line {n}: expected 'class cx cy w h', got {line!r}") from None
                if not 0 <= cls < len(classes):
                    raise UserError(f"{label_file}: line {n}: class {cls} is not in 0..{len(classes) - 1}")
                rows.append((cls, cx, cy, w, h))
        size = None
        if rows:  # normalised boxes need the image size: read the header only
            try:
                with Image.open(image_path) as im:
                    size = im.size
            except OSError:
                size = None  # undecodable: images() skips it later with a warning
        boxes = np.array([[(cx - w / 2) * size[0], (cy - h / 2) * size[1], (cx + w / 2) * size[0],
                           (cy + h / 2) * size[1]] for _, cx, cy, w, h in rows] if size else [], np.float32)
        items.append(Item(image_path, boxes.reshape(-1, 4), np.array([r[0] for r in rows] if size else [], np.int64), size))
    return Dataset(classes, items, labelled=True, source=str(path), format="yolo")


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
