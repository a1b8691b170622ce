"""YOLO datasets in the Ultralytics layout (data.yaml with train/val/test splits) and the flat one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deployer.datasets.base import dataset_splits, detect_format, open_dataset
from deployer.datasets.ultralytics import label_path
from deployer.errors import UserError
from tests.conftest import run_cli
from tests.datasets.builders import image, text, ultralytics


def _info(*args: str) -> dict:
    result = run_cli("data", "info", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_info_counts_each_split_from_the_folder_and_from_data_yaml(tmp_path):
    root = ultralytics(tmp_path / "ds")
    for src in (root, root / "data.yaml"):
        info = _info(str(src))
        assert info["format"] == "yolo" and info["classes"] == ["cat", "dog"]
        assert (info["images"], info["boxes"]) == (3, 3)
        assert info["boxes_per_class"] == {"cat": 1, "dog": 2}
        train, val = info["splits"]["train"], info["splits"]["val"]
        assert (train["images"], train["boxes"], train["boxes_per_class"]) == (2, 2, {"cat": 1, "dog": 1})
        assert (val["images"], val["boxes"], val["image_sizes"]["max_width"]) == (1, 1, 80)
        assert list(info["splits"]) == ["train", "val"]


def test_info_text_lists_the_splits(tmp_path):
    result = run_cli("data", "info", str(ultralytics(tmp_path / "ds")))
    assert result.returncode == 0, result.stderr
    assert "(yolo): 3 images, 3 boxes, 0 skipped" in result.stdout
    assert "split train:" in result.stdout and "2 images, 2 boxes" in result.stdout
    assert "split val:" in result.stdout and "1 images, 1 boxes" in result.stdout


def test_info_of_one_split(tmp_path):
    info = _info(str(ultralytics(tmp_path / "ds") / "data.yaml"), "--split", "val")
    assert info["split"] == "val" and "splits" not in info
    assert (info["images"], info["boxes"], info["boxes_per_class"]) == (1, 1, {"cat": 0, "dog": 1})


def test_boxes_are_in_pixels_and_labels_follow_the_images_to_labels_rule(tmp_path):
    root = ultralytics(tmp_path / "ds")
    train = open_dataset(root, split="train")
    assert train.split == "train" and [i.image_path.name for i in train.items] == ["a.jpg", "b.png"]
    a, b = train.items
    np.testing.assert_allclose(a.boxes, [[50, 25, 150, 75], [40, 15, 60, 35]])
    assert a.labels.tolist() == [0, 1] and a.size == (200, 100)
    assert len(b.boxes) == 0  # no label file: an image without objects
    val = open_dataset(root / "data.yaml", split="val")
    np.testing.assert_allclose(val.items[0].boxes, [[20, 15, 60, 45]])
    assert len(open_dataset(root).items) == 3  # no split: every split
    assert label_path(root / "images/train/x.y.jpg") == root / "labels/train/x.y.txt"
    # Only the last images/ component is replaced.
    assert label_path(root / "images/ds/images/val/c.jpg") == root / "images/ds/labels/val/c.txt"


def test_splits_as_txt_lists_lists_of_entries_and_a_base_path(tmp_path):
    root = ultralytics(tmp_path / "data" / "ds", yaml="")
    text(root / "train.txt", "./images/train/a.jpg\nimages/train/b.png\n\n")
    image(root / "extra/images/e.jpg", 32, 32)
    text(root / "extra/labels/e.txt", "0 0.5 0.5 1 1\n")
    text(tmp_path / "data" / "data.yaml", "path: ds\ntrain: train.txt\nval: [images/val, extra/images]\n"
         "test: null\nnames: [cat, dog]\nnc: 2\n")
    yaml_file = tmp_path / "data" / "data.yaml"
    assert dataset_splits(yaml_file) == ["train", "val"]
    assert [i.image_path.name for i in open_dataset(yaml_file, split="train").items] == ["a.jpg", "b.png"]
    val = open_dataset(yaml_file, split="val")
    assert [i.image_path.name for i in val.items] == ["c.jpg", "e.jpg"]
    np.testing.assert_allclose(val.items[1].boxes, [[0, 0, 32, 32]])


def test_yolov5_style_parent_paths_and_a_path_from_elsewhere(tmp_path):
    # Roboflow exports: train/images beside data.yaml, written '../train/images'; and a 'path'
    # that only means something inside Ultralytics' own datasets folder.
    image(tmp_path / "train/images/a.jpg", 10, 10)
    image(tmp_path / "valid/images/b.jpg", 10, 10)
    text(tmp_path / "valid/labels/b.txt", "0 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "data.yaml", "path: ../datasets/nowhere\ntrain: ../train/images\nval: ../valid/images\n"
         "names: [thing]\n")
    assert open_dataset(tmp_path, split="val").items[0].labels.tolist() == [0]
    assert open_dataset(tmp_path, split="train").items[0].image_path == (tmp_path / "train/images/a.jpg").resolve()


def test_flat_layout_keeps_working(tmp_path):
    image(tmp_path / "flat/images/a.jpg", 100, 50)
    text(tmp_path / "flat/labels/a.txt", "1 0.5 0.5 0.2 0.4\n")
    text(tmp_path / "flat/classes.txt", "x\ny\n")
    flat = open_dataset(tmp_path / "flat")
    assert flat.format == "yolo" and flat.classes == ["x", "y"] and flat.split == ""
    np.testing.assert_allclose(flat.items[0].boxes, [[40, 15, 60, 35]])
    assert dataset_splits(tmp_path / "flat") == []
    (tmp_path / "flat/classes.txt").unlink()
    text(tmp_path / "flat/data.yaml", "names:\n  0: p\n  1: q\n")  # names only: no splits
    assert detect_format(tmp_path / "flat") == "yolo" and open_dataset(tmp_path / "flat").classes == ["p", "q"]
    assert _info(str(tmp_path / "flat")).keys() >= {"images", "boxes", "boxes_per_class", "image_sizes"}
    result = run_cli("data", "info", str(tmp_path / "flat"), "--split", "val")
    assert result.returncode == 2 and "no split 'val'" in result.stderr


def test_convert_one_split_and_refuse_a_name_clash(tmp_path):
    root = ultralytics(tmp_path / "ds")
    result = run_cli("data", "convert", "--split", "train", "--to", "coco", str(root), str(tmp_path / "coco"))
    assert result.returncode == 0, result.stderr
    assert "converted 2 images from yolo (split train) to coco" in result.stdout
    doc = json.loads((tmp_path / "coco/annotations.json").read_text())
    assert sorted(i["file_name"] for i in doc["images"]) == ["a.jpg", "b.png"]
    assert sorted(a["bbox"] for a in doc["annotations"]) == [[40, 15, 20, 20], [50, 25, 100, 50]]
    image(root / "images/val/a.jpg", 20, 20)
    result = run_cli("data", "convert", "--to", "voc", str(root), str(tmp_path / "voc"))
    assert result.returncode == 2 and "have the same file name" in result.stderr and "--split" in result.stderr


@pytest.mark.parametrize("yaml,message", [
    ("train: images/train\nval: images/val\nnames: {0: cat, 2: dog}\n", "field 'names': a mapping needs the class"),
    ("train: images/train\nval: images/val\nnames: [cat, dog]\nnc: 3\n", "field 'nc' is 3 but 'names' has 2"),
    ("train: images/train\nval: images/nowhere\nnames: [cat, dog]\n", "field 'val': 'images/nowhere' is not"),
    ("train: 3\nnames: [cat, dog]\n", "field 'train': expected a folder of images"),
    ("train: images/train\nval: images/val\n", "field 'names' is missing"),
    ("train: [images/train\n", "not valid YAML"),
    ("path: nowhere\ntrain: gone\nnames: [a]\n", "field 'path': folder not found"),
])
def test_bad_data_yaml_names_the_field(tmp_path, yaml, message):
    root = ultralytics(tmp_path / "ds", yaml=yaml)
    with pytest.raises(UserError, match="data.yaml: " + message.replace("(", r"\(").replace("[", r"\[")):
        for split in dataset_splits(root) or [None]:
            open_dataset(root, split=split)


def test_an_empty_dataset_or_split_is_a_user_error(tmp_path):
    root = ultralytics(tmp_path / "ds")
    for f in (root / "images/val").iterdir():
        f.unlink()
    for args in ((), ("--split", "val")):
        result = run_cli("data", "info", str(root), *args)
        assert result.returncode == 2, result.stdout
        assert "data.yaml: split 'val' (images/val) has no images" in result.stderr
    assert run_cli("data", "info", str(root), "--split", "train").returncode == 0
    (tmp_path / "empty").mkdir()
    result = run_cli("data", "info", str(tmp_path / "empty"))
    assert result.returncode == 2 and "empty: cannot tell the dataset format" in result.stderr
    result = run_cli("data", "info", "--from", "folder", str(tmp_path / "empty"))
    assert result.returncode == 2 and "empty: no images (folder dataset); expected image files" in result.stderr
    (tmp_path / "flat/images").mkdir(parents=True)
    (tmp_path / "flat/labels").mkdir()
    text(tmp_path / "flat/classes.txt", "a\n")
    result = run_cli("data", "info", str(tmp_path / "flat"))
    assert result.returncode == 2 and "flat: no images (yolo dataset)" in result.stderr


def test_no_decodable_image_is_a_user_error(tmp_path):
    text(tmp_path / "f/a.jpg", "not an image")
    result = run_cli("data", "info", str(tmp_path / "f"))
    assert result.returncode == 2 and "none of its 1 images can be decoded" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("line,message", [
    ("0 0.5 0.5 -0.1 0.2", "cx, cy, w, h must be normalised to 0..1"),
    ("0 1.2 0.5 0.1 0.2", "cx, cy, w, h must be normalised to 0..1"),
    ("0 0.5 0.5 0.1 nan", "cx, cy, w, h must be normalised to 0..1"),
    ("2 0.5 0.5 0.1 0.1", "class 2 is not in 0..1"),
    ("0 0.5 0.5 0.1", "expected 'class cx cy w h'"),
    ("0 0.5 0.5 0.1 0.1 0.9", "expected 'class cx cy w h'"),             # 6 values: a prediction with its score
    ("0 0.1 0.1 0.5 0.1 1.3 0.6", r"expected 'class cx cy w h'.*\(polygon points must be normalised to 0..1\)"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    root = ultralytics(tmp_path / "ds")
    text(root / "labels/val/c.txt", f"1 0.5 0.5 0.5 0.5\n\n{line}\n")
    with pytest.raises(UserError, match=f"labels/val/c.txt: line 3: {message}"):
        open_dataset(root, split="val")


def test_a_label_file_that_is_not_utf8_is_a_user_error(tmp_path):
    root = ultralytics(tmp_path / "ds")
    (root / "labels/val/c.txt").write_bytes(b"\xff\xfe0 0.5 0.5 0.1 0.1\n")
    result = run_cli("data", "info", str(root))
    assert result.returncode == 2 and "labels/val/c.txt: not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr


def test_labels_never_found_warn_and_a_stale_classes_txt_is_refused(tmp_path):
    image(tmp_path / "images/train/a.jpg", 10, 10)
    image(tmp_path / "images/train/b.jpg", 10, 10)
    text(tmp_path / "annotations/train/a.txt", "0 0.5 0.5 0.2 0.2\n")   # not where Ultralytics looks
    text(tmp_path / "data.yaml", "train: images/train\nval: images/train\nnames: [thing, other]\n")
    with pytest.warns(UserWarning, match=r"none of its 2 images has a label file.*labels/train/a.txt"):
        assert sum(len(i.labels) for i in open_dataset(tmp_path, split="train").items) == 0
    text(tmp_path / "labels/train/a.txt", "1 0.5 0.5 0.2 0.2\n")
    text(tmp_path / "classes.txt", "other\nthing\n")   # the names in another order: every box relabelled
    with pytest.raises(UserError, match=r"classes.txt: its classes \(other, thing\) differ from .*data.yaml"):
        open_dataset(tmp_path, split="train")
    text(tmp_path / "classes.txt", "thing\nother\n")
    assert open_dataset(tmp_path, split="train").classes == ["thing", "other"]


def test_segmentation_polygons_and_pose_labels_read_as_their_boxes(tmp_path):
    """As Ultralytics' detection training reads them: a polygon as the box around its points, a
    pose line (data.yaml with kpt_shape) as the box before its keypoints."""
    root = ultralytics(tmp_path / "ds")
    text(root / "labels/val/c.txt", "1 0.5 0.5 0.5 0.5\n0 0.1 0.2 0.6 0.2 0.6 0.8 0.1 0.8\n")
    item = open_dataset(root, split="val").items[0]   # c.jpg is 80 x 60
    assert item.labels.tolist() == [1, 0]
    assert item.boxes[1].tolist() == pytest.approx([0.1 * 80, 0.2 * 60, 0.6 * 80, 0.8 * 60])
    text(root / "labels/val/c.txt", "1 0.5 0.5 0.5 0.5 0.4 0.4 2 0.6 0.6 1\n")   # 2 keypoints with visibility
    with pytest.raises(UserError, match="line 1: expected 'class cx cy w h'"):   # 11 values and no kpt_shape
        open_dataset(root, split="val")
    text(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nkpt_shape: [2, 3]\nnames: [cat, dog]\n")
    item = open_dataset(root, split="val").items[0]
    assert item.boxes[0].tolist() == pytest.approx([20, 15, 60, 45])
