"""Property tests: whatever bytes or text a user's file holds, the spec loader, the profile
loader and every dataset reader end in a result or a UserError naming the file, never in an
uncaught exception (a traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deployer.datasets.base import open_dataset
from deployer.errors import UserError
from deployer.spec import load_model_spec, load_target_profile
from tests.conftest import ROOT

# DEPLOYER_PROPERTY_EXAMPLES=600 for a deeper run; no example database in the checkout.
SETTINGS = settings(database=None, max_examples=int(os.environ.get("DEPLOYER_PROPERTY_EXAMPLES", "60")),
                    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like the file's format half the time: fragments of the real thing mixed
# with arbitrary characters.
FRAGMENTS = {
    "toml": ['name = "x"', "[source]", 'kind = "onnx"', 'path = "m.onnx"', "[[inputs]]", "shape = [1, 3, 8, 8]",
             '[outputs]\nnames = ["a"]', '[head]\ntype = "raw"', "[[artifacts]]", 'backend = "onnx"',
             'precision = "fp32"', "options = { calibration_images = -1 }", "=", "[", '"', "\n", "1e999"],
    "json": ['{"images": [', '{"id": 1, "file_name": "a.png", "width": 8, "height": 8}', "]", ',"annotations": [',
             '{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}', ',"categories": [{"id": 1, "name": "c"}]',
             "}", "null", '"width": "wide"', "-1", "1e400", ","],
    "xml": ["<annotation>", "<filename>a.png</filename>", "<size><width>8</width><height>8</height></size>",
            "<object><name>c</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>",
            "</annotation>", "<", "&", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "-3"],
    "txt": ["0 0.5 0.5 0.2 0.2", "\n", "1 0.1 0.1 -0.2 0.3", "0 1.7 0.5 0.1 0.1", "nan", "inf", "0", " ", "-1"],
    "csv": ["ImageID,LabelName,XMin,XMax,YMin,YMax", "\n", "a,/m/c,0.1,0.5,0.1,0.5", ",", '"', "2.0", "-0.1"],
}


def _text(kind: str):
    return st.one_of(st.text(max_size=300),
                     st.lists(st.sampled_from(FRAGMENTS[kind]) | st.text(max_size=8), max_size=30).map("".join))


def _content(kind: str):
    return st.one_of(_text(kind).map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=300))


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def _read(path: Path, fmt: str, split: str | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = open_dataset(path, fmt, split)
            dataset.images()   # decoding and skipping happen here
        except UserError as exc:
            assert str(exc)


@contextlib.contextmanager
def _folder():
    """A scratch folder per example (hypothesis runs many examples in one test call)."""
    root = Path(tempfile.mkdtemp(prefix="deployer-prop-"))
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _load(loader, path: Path) -> None:
    try:
        loader(path)
    except UserError as exc:
        assert path.name in str(exc)


@SETTINGS
@given(data=_content("json"))
def test_coco_reader(data):
    with _folder() as root:
        _png(root / "images" / "a.png")
        (root / "annotations.json").write_bytes(data)
        _read(root, "coco")


@SETTINGS
@given(data=_content("json"), width=st.one_of(st.integers(-5, 20), st.text(max_size=5), st.none(), st.floats()))
def test_coco_reader_with_odd_fields(data, width):
    with _folder() as root:
        _png(root / "images" / "a.png")
        doc = {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": 8}],
               "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, width]}],
               "categories": [{"id": 1, "name": "c"}]}
        (root / "annotations.json").write_text(json.dumps(doc))
        _read(root, "coco")


@SETTINGS
@given(data=_content("xml"))
def test_voc_reader(data):
    with _folder() as root:
        _voc(root, data)
        _read(root, "voc")


def _voc(root: Path, xml: bytes) -> None:
    """A VOC folder of one image, a.png, annotated by `xml`."""
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_bytes(xml)


@SETTINGS
@given(listing=_content("txt"))
def test_voc_split_lists(listing):
    """Whatever a split list holds, finding the splits and reading each ends in a result or a UserError."""
    from deployer.datasets.base import dataset_splits

    with _folder() as root:
        _voc(root, b"<annotation><filename>a.png</filename></annotation>")
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "val.txt").write_bytes(listing)
        for split in dataset_splits(root):
            _read(root, "voc", split)


@SETTINGS
@given(labels=_content("txt"), classes=_content("txt"))
def test_yolo_reader(labels, classes):
    with _folder() as root:
        _png(root / "images" / "a.png")
        (root / "labels").mkdir()
        (root / "labels" / "a.txt").write_bytes(labels)
        (root / "classes.txt").write_bytes(classes)
        _read(root, "yolo")


@SETTINGS
@given(yaml=_content("txt") | st.sampled_from([b"names: [a, b]\ntrain: images\n", b"path: ..\nval: x\n",
                                                b"names: {0: a}\ntrain: [images, images]\n", b"- 1\n- 2\n"]))
def test_ultralytics_data_yaml(yaml):
    with _folder() as root:
        _png(root / "images" / "a.png")
        (root / "labels").mkdir()
        (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (root / "data.yaml").write_bytes(yaml)
        _read(root / "data.yaml", "yolo")


@SETTINGS
@given(data=_content("csv"))
def test_openimages_reader(data):
    with _folder() as root:
        _png(root / "images" / "a.jpg")
        (root / "boxes.csv").write_bytes(data)
        _read(root / "boxes.csv", "openimages")


@SETTINGS
@given(data=st.binary(max_size=200))
def test_folder_reader_with_undecodable_images(data):
    with _folder() as root:
        _png(root / "good.png")
        (root / "bad.jpg").write_bytes(data)
        _read(root, "folder")


@SETTINGS
@given(data=_content("toml"))
def test_model_spec_loader(data):
    with _folder() as root:
        (root / "spec.toml").write_bytes(data)
        _load(load_model_spec, root / "spec.toml")


@SETTINGS
@given(data=_content("toml"))
def test_target_profile_loader(data):
    with _folder() as root:
        (root / "board.toml").write_bytes(data)
        _load(load_target_profile, root / "board.toml")


@SETTINGS
@given(lines=st.lists(st.sampled_from(FRAGMENTS["toml"]) | st.text(max_size=12), max_size=12))
def test_model_spec_loader_on_the_example_with_lines_added(lines):
    # The example spec, valid, with arbitrary lines appended: valid specs too get fuzzed.
    with _folder() as root:
        text = (ROOT / "examples" / "shapes" / "shapes.toml").read_text()
        text = text.replace('"model.py"', f'"{ROOT / "examples" / "shapes" / "model.py"}"')
        (root / "spec.toml").write_text(text + "\n" + "\n".join(lines))
        _load(load_model_spec, root / "spec.toml")
