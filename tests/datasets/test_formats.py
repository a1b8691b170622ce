"""COCO, VOC, YOLO and image-folder readers and writers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from deployer.datasets.base import open_dataset, write_dataset
from deployer.datasets.synth import CLASSES, generate
from deployer.errors import UserError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    result = run_cli("data", "synth", str(out), "--count", "6", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return out


def _sorted(item):
    order = np.lexsort((item.labels, item.boxes[:, 1], item.boxes[:, 0]))
    return item.boxes[order], item.labels[order]


def test_synth_is_deterministic_and_varied():
    a, b = list(generate(4, seed=9)), list(generate(4, seed=9))
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image)) and np.array_equal(x.boxes, y.boxes)
    samples = list(generate(40, seed=1))
    labels = np.concatenate([s.labels for s in samples])
    assert set(labels.tolist()) == set(range(len(CLASSES)))
    assert max(len(s.labels) for s in samples) >= 3
    assert len({s.image.size for s in samples}) > 10


def test_round_trip_coco_voc_yolo_coco(coco, tmp_path):
    original = open_dataset(coco)
    assert original.format == "coco" and original.classes == list(CLASSES)
    for src, fmt in ((coco, "voc"), (tmp_path / "voc", "yolo"), (tmp_path / "yolo", "coco")):
        result = run_cli("data", "convert", "--to", fmt, str(src), str(tmp_path / (fmt if fmt != "coco" else "back")))
        assert result.returncode == 0, result.stderr
    back = open_dataset(tmp_path / "back")
    assert back.classes == original.classes
    assert [i.image_path.name for i in back.items] == [i.image_path.name for i in original.items]
    for a, b in zip(original.items, back.items):
        (ba, la), (bb, lb) = _sorted(a), _sorted(b)
        assert la.tolist() == lb.tolist()
        np.testing.assert_allclose(ba, bb, atol=1.0)


def test_each_layout_is_detected(coco, tmp_path):
    for fmt in ("voc", "yolo"):
        write_dataset(open_dataset(coco), tmp_path / fmt, fmt)
        assert open_dataset(tmp_path / fmt).format == fmt
    folder = open_dataset(tmp_path / "yolo" / "images")
    assert folder.format == "folder" and not folder.labelled and len(folder.items) == 6


def test_info_counts(coco):
    result = run_cli("data", "info", str(coco), "--json")
    info = json.loads(result.stdout)
    assert info["images"] == 6 and info["skipped"] == 0
    assert sum(info["boxes_per_class"].values()) == info["boxes"] > 0
    assert info["image_sizes"]["min_width"] >= 192


def test_undecodable_image_is_skipped_and_counted(coco, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(coco, copy)
    victim = sorted((copy / "images").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    result = run_cli("data", "info", str(copy), "--json")
    info = json.loads(result.stdout)
    assert info["images"] == 5 and info["skipped"] == 1 and info["skipped_files"] == [str(victim)]
    dataset = open_dataset(copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(list(dataset.images())) == 5
    assert any(victim.name in str(w.message) for w in caught)
    result = run_cli("data", "convert", "--to", "voc", str(copy), str(tmp_path / "v"))
    assert result.returncode == 0 and "1 skipped" in result.stdout


def test_malformed_coco_names_field(coco, tmp_path):
    doc = json.loads((coco / "annotations.json").read_text())
    doc["annotations"][2]["bbox"] = [1, 2, 3]
    bad = tmp_path / "annotations.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"annotations.json: annotations\[2\]: field 'bbox'"):
        open_dataset(bad)
    bad.write_text('{"images": [}')
    with pytest.raises(UserError, match="annotations.json: not valid JSON \\(line 1"):
        open_dataset(bad)


def test_malformed_yolo_names_line(coco, tmp_path):
    write_dataset(open_dataset(coco), tmp_path / "y", "yolo")
    label = sorted((tmp_path / "y" / "labels").iterdir())[0]
    label.write_text(label.read_text() + "2 0.5 0.5 zero 0.1\n")
    lines = len(label.read_text().splitlines())
    with pytest.raises(UserError, match=f"{label.name}: line {lines}: expected 'class cx cy w h'"):
        open_dataset(tmp_path / "y")


def test_malformed_voc_names_file_and_line(coco, tmp_path):
    write_dataset(open_dataset(coco), tmp_path / "v", "voc")
    xml = sorted((tmp_path / "v" / "Annotations").iterdir())[0]
    xml.write_text(xml.read_text().replace("</annotation>", ""))
    with pytest.raises(UserError, match=f"{xml.name}: malformed XML \\(line"):
        open_dataset(tmp_path / "v")


def test_cli_convert_bad_source_exits_2(tmp_path):
    result = run_cli("data", "convert", "--to", "coco", str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert result.returncode == 2 and "dataset not found" in result.stderr
