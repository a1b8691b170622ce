"""Open Images boxes: a boxes CSV (`ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,...`,
coordinates normalised to 0..1), a class-description CSV (`LabelName,DisplayName`, with or
without that header) beside it, and the images as `<ImageID>.jpg` in images/ (or beside the CSVs).

The official CSVs cover a whole split while users download a few of its images: the dataset is
the images present, with the rows of those images; rows of absent images are not read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from deployer.datasets.base import Dataset, Item, image_size, list_images
from deployer.errors import UserError

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
DESCRIPTION_HEADER = ["LabelName", "DisplayName"]


def _first_row(path: Path) -> list[str]:
    # The header line only: a bad byte further on is reported with its file when the rows are read.
    with path.open("rb") as f:
        line = f.readline(1 << 16).decode("utf-8-sig", errors="replace")
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def is_boxes_csv(path: Path) -> bool:
    return set(BOX_COLUMNS) <= set(_first_row(path))


def find_boxes_csv(folder: Path) -> Path | None:
    found = [p for p in sorted(folder.glob("*.csv")) if is_boxes_csv(p)]
    if len(found) > 1:
        raise UserError(f"{folder}: several Open Images boxes CSVs ({', '.join(p.name for p in found)}); "
                        "give the one to read as the dataset path")
    return found[0] if found else None


def _descriptions_csv(folder: Path, boxes_csv: Path) -> Path:
    found = [p for p in sorted(folder.glob("*.csv")) if p != boxes_csv and len(_first_row(p)) == 2]
    if len(found) > 1:  # the official name says which
        found = [p for p in found if "class-descriptions" in p.name] or found
    if len(found) != 1:
        raise UserError(f"{boxes_csv}: needs one class-description CSV (LabelName,DisplayName) beside it, "
                        f"found {', '.join(p.name for p in found) or 'none'}")
    return found[0]


def _rows(path: Path):
    """(line number, row) of a CSV; a file that is not UTF-8 CSV text is a UserError."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); expected an Open Images CSV") from None
    except csv.Error as exc:
        raise UserError(f"{path}: not a valid CSV: {exc}") from None


def _descriptions(path: Path) -> dict[str, str]:
    names = {}
    for line, row in _rows(path):
        if line == 1 and row == DESCRIPTION_HEADER:
            continue
        if not row:
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise UserError(f"{path}: line {line}: expected 'LabelName,DisplayName', got {','.join(row)!r}")
        names[row[0]] = row[1]
    return names


def _box(row: list[str], col: dict[str, int], where: str) -> list[float]:
    try:
        x1, x2, y1, y2 = (float(row[col[k]]) for k in ("XMin", "XMax", "YMin", "YMax"))
    except ValueError:
        raise UserError(f"{where}: XMin, XMax, YMin, YMax must be numbers") from None
    if not (0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1):
        raise UserError(f"{where}: XMin, XMax, YMin, YMax must be normalised to 0..1 with XMin <= XMax and "
                        f"YMin <= YMax, got {x1}, {x2}, {y1}, {y2}")
    return [x1, y1, x2, y2]


def _boxes(path: Path, wanted: set[str], names: dict[str, str], names_file: Path) -> dict[str, list]:
    """ImageID -> [(normalised xyxy, LabelName)] for the images in `wanted`."""
    rows = _rows(path)
    _, header = next(rows, (1, []))
    missing = [c for c in BOX_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: line 1: missing column(s) {', '.join(missing)}; expected a header "
                        "'ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,...'")
    col = {c: header.index(c) for c in BOX_COLUMNS}
    boxes: dict[str, list] = {}
    for line, row in rows:
        if not row:
            continue
        where = f"{path}: line {line}"
        if len(row) < len(header):
            raise UserError(f"{where}: {len(row)} values for {len(header)} columns")
        if row[col["ImageID"]] not in wanted:
            continue
        label = row[col["LabelName"]]
        if label not in names:
            raise UserError(f"{where}: LabelName {label!r} is not in {names_file}")
        boxes.setdefault(row[col["ImageID"]], []).append((_box(row, col, where), label))
    return boxes


def _item(image: Path, boxes: list, classes: list[str], names: dict[str, str]) -> Item:
    size = image_size(image) if boxes else None
    if size is None:  # no boxes, or undecodable: images() skips it later with a warning
        return Item(image)
    scale = np.array([size[0], size[1], size[0], size[1]], np.float32)
    return Item(image, np.array([b for b, _ in boxes], np.float32).reshape(-1, 4) * scale,
                np.array([classes.index(names[label]) for _, label in boxes], np.int64), size)


def read(path: Path) -> Dataset:
    boxes_csv = path if path.is_file() else find_boxes_csv(path)
    if boxes_csv is None:
        raise UserError(f"{path}: no Open Images boxes CSV (a header with {', '.join(BOX_COLUMNS)})")
    folder = boxes_csv.parent
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    images = {p.stem: p for p in list_images(image_dir)}
    names_file = _descriptions_csv(folder, boxes_csv)
    names = _descriptions(names_file)
    boxes = _boxes(boxes_csv, set(images), names, names_file)
    # Only the classes present: a model is checked against every class its dataset names.
    used = {label for rows in boxes.values() for _, label in rows}
    classes = list(dict.fromkeys(name for mid, name in names.items() if mid in used))
    items = [_item(p, boxes.get(image_id, []), classes, names) for image_id, p in images.items()]
    return Dataset(classes, items, labelled=True, source=str(path), format="openimages")
