"""Open Images CSV boxes: read, detected, converted; coordinates and labels checked with file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deployer.datasets.base import detect_format, open_dataset
from deployer.errors import UserError
from tests.conftest import run_cli
from tests.datasets.builders import image, text

HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf\n"
ROWS = ("img1,xclick,/m/cat,1,0.1,0.5,0.2,0.6,0,0,0\n"
        "img1,xclick,/m/dog,1,0,1,0,1,1,0,0\n"
        "img2,xclick,/m/dog,1,0.25,0.75,0.5,1,0,0,0\n"
        "absent,xclick,/m/bird,1,0.1,0.2,0.1,0.2,0,0,0\n")   # an image not downloaded: ignored


def _openimages(root, rows: str = ROWS, descriptions: str = "/m/bird,Bird\n/m/dog,Dog\n/m/cat,Cat\n"):
    image(root / "images/img1.jpg", 200, 100)
    image(root / "images/img2.jpg", 40, 80)
    image(root / "images/img3.jpg", 10, 10)   # no rows: an image without objects
    text(root / "validation-annotations-bbox.csv", HEADER + rows)
    text(root / "class-descriptions-boxable.csv", descriptions)
    return root


def test_reads_boxes_in_pixels_with_the_classes_present(tmp_path):
    root = _openimages(tmp_path / "oi")
    assert detect_format(root) == "openimages"
    assert detect_format(root / "validation-annotations-bbox.csv") == "openimages"
    for src in (root, root / "validation-annotations-bbox.csv"):
        dataset = open_dataset(src)
        assert dataset.format == "openimages" and dataset.classes == ["Dog", "Cat"]  # description order, used only
        assert [i.image_path.name for i in dataset.items] == ["img1.jpg", "img2.jpg", "img3.jpg"]
        one, two, three = dataset.items
        np.testing.assert_allclose(one.boxes, [[20, 20, 100, 60], [0, 0, 200, 100]])
        assert one.labels.tolist() == [1, 0] and one.size == (200, 100)
        np.testing.assert_allclose(two.boxes, [[10, 40, 30, 80]])
        assert len(three.boxes) == 0


def test_description_header_is_accepted(tmp_path):
    root = _openimages(tmp_path / "oi", descriptions="LabelName,DisplayName\n/m/dog,Dog\n/m/cat,Cat\n")
    assert open_dataset(root).classes == ["Dog", "Cat"]


def test_info_and_convert_to_coco(tmp_path):
    root = _openimages(tmp_path / "oi")
    result = run_cli("data", "info", str(root), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["format"], info["images"], info["boxes"]) == ("openimages", 3, 3)
    assert info["boxes_per_class"] == {"Dog": 2, "Cat": 1}
    result = run_cli("data", "convert", "--from", "openimages", "--to", "coco", str(root), str(tmp_path / "coco"))
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "coco/annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["Dog", "Cat"]
    assert sorted(a["bbox"] for a in doc["annotations"]) == [[0, 0, 200, 100], [10, 40, 20, 40], [20, 20, 80, 40]]


@pytest.mark.parametrize("row,message", [
    ("img2,x,/m/dog,1,0.6,0.5,0,1,0,0,0", "XMin, XMax, YMin, YMax must be normalised to 0..1 with XMin <= XMax"),
    ("img2,x,/m/dog,1,0.1,0.5,0,1.5,0,0,0", "XMin, XMax, YMin, YMax must be normalised to 0..1"),
    ("img2,x,/m/dog,1,-0.1,0.5,0,1,0,0,0", "XMin, XMax, YMin, YMax must be normalised to 0..1"),
    ("img2,x,/m/dog,1,a,0.5,0,1,0,0,0", "XMin, XMax, YMin, YMax must be numbers"),
    ("img2,x,/m/unicorn,1,0.1,0.5,0,1,0,0,0", "LabelName '/m/unicorn' is not in .*class-descriptions-boxable.csv"),
    ("img2,x,/m/dog", "3 values for 11 columns"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    root = _openimages(tmp_path / "oi", rows=ROWS + row + "\n")
    with pytest.raises(UserError, match=f"validation-annotations-bbox.csv: line 6: {message}"):
        open_dataset(root)


def test_missing_column_and_missing_descriptions(tmp_path):
    root = _openimages(tmp_path / "oi")
    text(root / "validation-annotations-bbox.csv", "ImageID,LabelName,XMin,XMax,YMin\nimg1,/m/cat,0,1,0\n")
    result = run_cli("data", "info", str(root / "validation-annotations-bbox.csv"))
    assert result.returncode == 2 and "line 1: missing column(s) YMax" in result.stderr
    root = _openimages(tmp_path / "oi2")
    (root / "class-descriptions-boxable.csv").unlink()
    with pytest.raises(UserError, match="needs one class-description CSV"):
        open_dataset(root)


def test_no_images_for_the_csv_is_a_user_error(tmp_path):
    root = _openimages(tmp_path / "oi")
    for f in (root / "images").iterdir():
        f.unlink()
    result = run_cli("data", "info", str(root))
    assert result.returncode == 2 and "no images (openimages dataset)" in result.stderr


def test_csv_that_is_not_utf8(tmp_path):
    root = _openimages(tmp_path / "oi")
    (root / "validation-annotations-bbox.csv").write_bytes(HEADER.encode() + b"img1,x,\xff\xfe,1,0,1,0,1,0,0,0\n")
    with pytest.raises(UserError, match="validation-annotations-bbox.csv: not UTF-8 text"):
        open_dataset(root)
