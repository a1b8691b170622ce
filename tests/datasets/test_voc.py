"""Pascal VOC as its users keep it: ImageSets/Main split lists, <difficult> objects, <size>, and
images that an annotation names but that are not there."""

from __future__ import annotations

import warnings

import pytest

from deployer.datasets.base import SkippedImage, dataset_splits, open_dataset
from deployer.errors import UserError
from deployer.inputs import load_dataset
from deployer.spec import load_model_spec
from tests.conftest import run_cli, write_spec
from tests.datasets.builders import image, text


def _xml(name: str, objects: str, size: str = "<size><width>100</width><height>50</height><depth>3</depth></size>"):
    return f"<annotation><filename>{name}.jpg</filename>{size}{objects}</annotation>"


def _object(cls: str, box=(10, 10, 40, 30), difficult: int | None = None) -> str:
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return (f"<object><name>{cls}</name>{flag}<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
            f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")


def _voc(root, lists: dict[str, str] | None = None):
    """Images 1..4 (100 x 50), one cat each; 2 has a difficult dog beside it."""
    for i in range(1, 5):
        image(root / f"JPEGImages/{i}.jpg", 100, 50)
        extra = _object("dog", difficult=1) if i == 2 else ""
        text(root / f"Annotations/{i}.xml", _xml(str(i), _object("cat", difficult=0) + extra))
    for name, ids in (lists if lists is not None else
                      {"train": "1\n2\n", "val": "3\n4\n", "trainval": "1\n2\n3\n4\n",
                       "cat_train": "1  1\n2  1\n"}).items():
        text(root / f"ImageSets/Main/{name}.txt", ids)
    return root


def _names(dataset) -> list[str]:
    return [i.image_path.name for i in dataset.items]


def test_split_lists_are_the_splits_and_per_class_lists_are_not(tmp_path):
    root = _voc(tmp_path / "voc")
    assert dataset_splits(root) == ["train", "trainval", "val"]
    assert _names(open_dataset(root, split="val")) == ["3.jpg", "4.jpg"]
    whole = open_dataset(root)
    assert _names(whole) == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"] and whole.split == ""
    with pytest.raises(UserError, match=r"no split 'test' \(it has: train, trainval, val\)"):
        open_dataset(root, split="test")


def test_a_build_calibrates_on_train_and_evaluates_on_val_of_a_voc_folder(tmp_path):
    root = _voc(tmp_path / "voc")
    spec = load_model_spec(write_spec(tmp_path, extra=f'[data]\ncalibration = "{root}"\nevaluation = "{root}"\n'))
    assert _names(load_dataset(spec.data.calibration, spec, "calibration")) == ["1.jpg", "2.jpg"]
    assert _names(load_dataset(spec.data.evaluation, spec, "evaluation")) == ["3.jpg", "4.jpg"]
    # CVAT writes only default.txt: a folder without the role's list is read whole, not refused.
    cvat = _voc(tmp_path / "cvat", {"default": "1\n2\n3\n4\n"})
    spec = load_model_spec(write_spec(tmp_path, extra=f'[data]\nevaluation = "{cvat}"\n'))
    assert len(load_dataset(spec.data.evaluation, spec, "evaluation").items) == 4
    # A split named in the spec must exist.
    with pytest.raises(UserError, match=r"data.evaluation_split': expected one of the splits of .*cvat: default"):
        load_model_spec(write_spec(tmp_path, extra=f'[data]\nevaluation = "{cvat}"\nevaluation_split = "val"\n'))


def test_a_split_list_naming_an_id_without_annotation_is_refused_with_its_line(tmp_path):
    root = _voc(tmp_path / "voc", {"val": "3\n\n9\n"})
    with pytest.raises(UserError, match=r"ImageSets/Main/val.txt: line 3: image id '9' has no annotation file"):
        open_dataset(root, split="val")


def test_difficult_objects_are_left_out_and_counted(tmp_path):
    root = _voc(tmp_path / "voc")
    dataset = open_dataset(root)
    assert dataset.classes == ["cat", "dog"]          # the class is known, its difficult box is not a label
    assert [len(i.labels) for i in dataset.items] == [1, 1, 1, 1] and dataset.left_out == 1
    result = run_cli("data", "info", str(root))
    assert result.returncode == 0 and "1 objects marked difficult are left out" in result.stdout, result.stdout


@pytest.mark.parametrize("box,size,fails", [
    ((10, 10, 104, 50), "<size><width>100</width><height>50</height></size>", True),    # 4 px past 100: > 2 %
    ((10, -5, 40, 30), "<size><width>100</width><height>50</height></size>", True),
    ((0, 0, 101, 50), "<size><width>100</width><height>50</height></size>", False),     # rounding: within 2 %
    ((10, 10, 400, 300), "<size><width>0</width><height>0</height></size>", False),     # no size known: not judged
])
def test_boxes_outside_their_image_are_refused_with_file_and_object(tmp_path, box, size, fails):
    root = tmp_path / "voc"
    image(root / "JPEGImages/1.jpg", 100, 50)
    text(root / "Annotations/1.xml", _xml("1", _object("cat") + _object("cat", box), size))
    if fails:
        with pytest.raises(UserError, match=r"1.xml: <object> 2: <bndbox> .* lies outside its 100 x 50 image"):
            open_dataset(root)
    else:
        assert len(open_dataset(root).items[0].labels) == 2


def test_a_missing_image_is_named_with_the_record_that_names_it(tmp_path):
    root = _voc(tmp_path / "voc")
    (root / "JPEGImages/2.jpg").unlink()
    dataset = open_dataset(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(list(dataset.images())) == 3
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedImage)]
    assert len(messages) == 1 and "2.jpg: image file not found (named by" in messages[0] \
        and "Annotations/2.xml" in messages[0], messages
    # COCO names the entry.
    text(tmp_path / "coco/annotations.json",
         '{"images": [{"id": 1, "file_name": "gone.jpg"}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(open_dataset(tmp_path / "coco").images()) == []
    assert "named by" in str(caught[0].message) and "images[0]" in str(caught[0].message)


def test_a_converted_split_keeps_its_name_as_a_voc_list(tmp_path):
    from tests.datasets.builders import ultralytics

    root = ultralytics(tmp_path / "ds")
    assert run_cli("data", "convert", "--split", "val", "--to", "voc", str(root), str(tmp_path / "v")).returncode == 0
    assert dataset_splits(tmp_path / "v") == ["val"] and _names(open_dataset(tmp_path / "v", split="val")) == ["c.jpg"]
    assert run_cli("data", "convert", "--to", "voc", str(tmp_path / "v"), str(tmp_path / "w")).returncode == 0
    assert dataset_splits(tmp_path / "w") == ["trainval"]
