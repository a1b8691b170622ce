"""COCO `file_name` in subfolders, resolved inside the dataset folder and never outside it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deployer.datasets.base import open_dataset
from deployer.errors import UserError
from tests.conftest import run_cli
from tests.datasets.builders import image, text


def _coco(folder, file_names: list[str]) -> None:
    doc = {"images": [{"id": i + 10, "file_name": f, "width": 50, "height": 40} for i, f in enumerate(file_names)],
           "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [5, 6, 10, 20]}] if file_names else [],
           "categories": [{"id": 3, "name": "cat"}]}
    text(folder / "annotations.json", json.dumps(doc))


def test_file_name_in_subfolders_of_images_or_of_the_json_folder(tmp_path):
    image(tmp_path / "images/val2017/a.jpg", 50, 40)   # relative to images/ beside the json
    image(tmp_path / "train2017/b.jpg", 50, 40)        # relative to the json's folder
    _coco(tmp_path, ["val2017/a.jpg", "train2017/b.jpg"])
    dataset = open_dataset(tmp_path)
    assert [i.image_path for i in dataset.items] == [tmp_path / "images/val2017/a.jpg", tmp_path / "train2017/b.jpg"]
    np.testing.assert_allclose(dataset.items[0].boxes, [[5, 6, 15, 26]])
    result = run_cli("data", "info", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 2 and json.loads(result.stdout)["skipped"] == 0


@pytest.mark.parametrize("name", ["../outside.jpg", "images/../../outside.jpg", "/etc/outside.jpg",
                                  "..\\outside.jpg"])
def test_file_name_cannot_leave_the_dataset_folder(tmp_path, name):
    image(tmp_path / "outside.jpg", 8, 8)
    image(tmp_path / "ds/images/a.jpg", 8, 8)
    _coco(tmp_path / "ds", ["a.jpg", name])
    with pytest.raises(UserError, match=r"annotations.json: images\[1\] \(id 11\): field 'file_name' .* leads "
                                        r"outside the dataset folder"):
        open_dataset(tmp_path / "ds")
    result = run_cli("data", "info", str(tmp_path / "ds"))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_coco_without_images_is_a_user_error(tmp_path):
    _coco(tmp_path, [])
    result = run_cli("data", "info", str(tmp_path / "annotations.json"))
    assert result.returncode == 2
    assert "annotations.json: no images (coco dataset); expected entries in the COCO json's 'images'" in result.stderr
