"""Bad input, case by case, through the real CLI: each ends with the exit status it should,
a message naming the culprit (file, field, line or op), no traceback, and the output folder
as it should be (nothing written where the error comes before the work). Interrupts are in
tests/test_interrupts.py; arbitrary bytes in every reader in tests/datasets/test_properties.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, run_cli, write_spec

EXAMPLE = ROOT / "examples" / "shapes"


def _png(path: Path, size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path, format="PNG")
    return path


def _coco(root: Path, doc: dict | bytes) -> Path:
    _png(root / "images" / "a.png")
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    (root / "annotations.json").write_bytes(data)
    return root


def _coco_doc(**image):
    return {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16, **image}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8]}],
            "categories": [{"id": 1, "name": "circle"}]}


def _yolo(root: Path, label: bytes) -> Path:
    _png(root / "images" / "a.png")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "a.txt").write_bytes(label)
    (root / "classes.txt").write_text("circle\n")
    return root


def _voc(root: Path, xml: bytes) -> Path:
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "a.xml").write_bytes(xml)
    return root


def _files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


BAD_BOX = b"<annotation><filename>a.png</filename><size><width>16</width><height>16</height></size><object>" \
          b"<name>circle</name><bndbox><xmin>9</xmin><ymin>2</ymin><xmax>4</xmax><ymax>8</ymax></bndbox></object>" \
          b"</annotation>"

# name -> (make the dataset under a folder, what the message must name)
DATASETS = {
    "coco not utf-8": (lambda r: _coco(r, json.dumps(_coco_doc()).replace("circle", "c\u00e9rcle").encode("latin-1")),
                       ["annotations.json", "UTF-8"]),
    "coco width not a number": (lambda r: _coco(r, _coco_doc(width="wide")), ["images[0]", "'width'"]),
    "coco negative height": (lambda r: _coco(r, _coco_doc(height=-3)), ["images[0]", "positive"]),
    "coco bbox outside the image": (lambda r: _coco(r, {**_coco_doc(), "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 2, 30, 8]}]}), ["annotations[0]", "outside"]),
    "coco truncated json": (lambda r: _coco(r, json.dumps(_coco_doc()).encode()[:40]), ["annotations.json", "JSON"]),
    "coco duplicate image id": (lambda r: _coco(r, {**_coco_doc(), "images": _coco_doc()["images"] * 2}),
                                ["images[1]", "id 1 is already used by images[0]"]),
    "coco duplicate category id": (lambda r: _coco(r, {**_coco_doc(), "categories": [
        {"id": 1, "name": "circle"}, {"id": 1, "name": "dup"}]}), ["categories[1]", "category id 1 is used twice"]),
    "coco empty images": (lambda r: _coco(r, {**_coco_doc(), "images": [], "annotations": []}), ["no images"]),
    "yolo binary label file": (lambda r: _yolo(r, bytes(range(256))), ["a.txt", "UTF-8"]),
    "yolo negative width": (lambda r: _yolo(r, b"0 0.5 0.5 -0.2 0.3\n"), ["a.txt", "line 1"]),
    "yolo coordinate above 1": (lambda r: _yolo(r, b"0 1.7 0.5 0.1 0.1\n"), ["a.txt", "line 1"]),
    "yolo box reaching outside": (lambda r: _yolo(r, b"0 0.5 0.5 0.2 0.2\n0 0.95 0.5 0.5 0.2\n"),
                                  ["a.txt", "line 2", "outside"]),
    "yolo unknown class": (lambda r: _yolo(r, b"3 0.5 0.5 0.2 0.2\n"), ["a.txt", "class 3"]),
    "yolo no images": (lambda r: _files(r, {"images/.keep": b"", "labels/.keep": b"", "classes.txt": b"circle\n"}),
                       ["no images"]),
    "voc malformed xml": (lambda r: _voc(r, b"<annotation><filename>a.png"), ["a.xml"]),
    "voc inverted box": (lambda r: _voc(r, BAD_BOX), ["a.xml"]),
    "only non-image files": (lambda r: _files(r, {"notes.txt": b"x"}), ["cannot tell"]),
    "every image corrupt": (lambda r: _files(r, {"a.jpg": b"not a jpeg"}), ["none of its 1 images"]),
}


def _no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert "\x1b[" not in result.stderr   # no terminal colour codes in an error message


@pytest.mark.parametrize("case", sorted(DATASETS))
def test_dataset_cases_exit_2_naming_the_file(case, tmp_path):
    make, named = DATASETS[case]
    root = make(tmp_path / "data")
    result = run_cli("data", "info", str(root))
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    _no_traceback(result)
    for fragment in named:
        assert fragment in result.stderr, (case, result.stderr)


def test_dataset_error_comes_before_any_work_and_writes_nothing(tiny_project, tmp_path):
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = write_spec(tmp_path, source=src)
    bad = _yolo(tmp_path / "bad", b"0 0.5 0.5 -0.2 0.3\n")
    out = tmp_path / "dist"
    result = run_cli("build", str(spec), "--target", "web", "--calib", str(bad), "--eval", str(bad), "--out", str(out))
    assert result.returncode == 2 and "a.txt: line 1" in result.stderr
    _no_traceback(result)
    assert not (out / "tiny").exists()            # refused before the lowering: nothing written


def test_undecodable_images_warn_once_in_one_plain_line(tiny_spec, tmp_path):
    data = tmp_path / "eval"
    shutil.copytree(Path(tiny_spec).parent.parent / "tiny0" / "data" / "eval", data) \
        if (Path(tiny_spec).parent.parent / "tiny0").is_dir() else None
    if not data.is_dir():   # the session's tiny project lives elsewhere: synthesise a set
        subprocess.run([sys.executable, "-m", "deployer.cli", "data", "synth", str(data), "--count", "6"], cwd=ROOT,
                       check=True, capture_output=True)
    images = sorted((data / "images").iterdir())
    for bad in images[:2]:
        bad.write_bytes(b"garbage")
    profile = tmp_path / "light.toml"
    profile.write_text('name = "light"\n[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n')
    result = run_cli("build", str(tiny_spec), "--target", str(profile), "--eval", str(data), "--out",
                     str(tmp_path / "dist"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "could not be read or decoded" in ln]
    assert len(lines) == 1 and lines[0].startswith("deployer: warning: ") and "2 of" in lines[0]
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr


@pytest.mark.parametrize("case", ["a file", "unwritable"])
def test_output_folder_problems_exit_2_before_work(tiny_spec, tmp_path, case):
    out = tmp_path / "out"
    if case == "a file":
        out.write_text("x")
    else:
        out.mkdir()
        out.chmod(0o555)
        probe = out / "probe"
        try:   # root writes anywhere: make it really unwritable, or skip
            probe.write_text("")
            probe.unlink()
            pytest.skip("this user writes into a 0555 folder (root)")
        except PermissionError:
            pass
    result = run_cli("build", str(tiny_spec), "--target", "web", "--out", str(out))
    assert result.returncode == 2 and f"--out {out}" in result.stderr, result.stderr
    _no_traceback(result)


def test_junit_path_that_is_a_folder_is_refused(tiny_spec, tmp_path):
    result = run_cli("build", str(tiny_spec), "--target", "web", "--junit", str(tmp_path), "--out", str(tmp_path / "d"))
    assert result.returncode == 2 and "--junit" in result.stderr and "is a folder" in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("manifest,field", [
    ({"model": "x", "artifacts": []}, "'spec'"),
    ([1, 2], "(top level)"),
    ({"model": "x", "spec": "s.toml", "artifacts": []}, "'targets'"),
    ({"model": "x", "spec": "s.toml", "targets": {}, "artifacts": [{"target": "web"}]}, "'artifacts[0].backend'"),
    ({"model": "x", "spec": "s.toml", "targets": {}, "artifacts": [
        {"target": "web", "backend": "onnx", "precision": "fp32", "status": "built", "path": "web/m.onnx",
         "files": ["web/m.onnx"], "sha256": "0"}]}, "'artifacts[0].target'"),
    (b"\xe9\xff", "not UTF-8"),
    (b'{"model": ', "not valid JSON"),
])
@pytest.mark.parametrize("command", ["verify", "bench", "merge"])
def test_damaged_manifests_are_named_not_tracebacks(tmp_path, manifest, field, command):
    folder = tmp_path / "m"
    folder.mkdir()
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    args = [command, str(folder)] + (["--out", str(tmp_path / "merged")] if command == "merge" else [])
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "manifest.json" in result.stderr and field in result.stderr, result.stderr
    _no_traceback(result)
    assert not (tmp_path / "merged").exists()   # a refused merge makes no --out folder


@pytest.mark.parametrize("name,content,expected", [
    ("empty.onnx", b"", "empty.onnx"),
    ("png.onnx", None, "png.onnx"),
    ("truncated.torchscript", "half", "damaged or truncated"),
    ("empty.torchscript", b"", "empty file"),
    ("model.pt", "pickle", "pickled nn.Module"),
])
def test_model_files_that_cannot_load(tiny_project, tmp_path, name, content, expected):
    path = tmp_path / name
    kind = "onnx" if name.endswith(".onnx") else "torch"
    if content is None:
        _png(path)
    elif content == "half":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("m/code/m.py", "x" * 4000)
            z.writestr("m/constants.pkl", b"\x80\x04N.")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "pickle":
        import pickle
        path.write_bytes(pickle.dumps({"not": "a module"}))
    else:
        path.write_bytes(content)
    spec = write_spec(tmp_path, source=f'kind = "{kind}"\npath = "{path}"', data=tiny_project / "data")
    result = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert result.returncode == 2, result.stdout + result.stderr
    _no_traceback(result)
    assert name in result.stderr and expected in result.stderr, result.stderr
    assert not (tmp_path / "dist" / "tiny" / "web").exists()


def test_truncated_keras_file_is_called_damaged_not_missing(tmp_path):
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes((EXAMPLE / "shapes_keras.keras").read_bytes()[:5000])
    text = (EXAMPLE / "shapes_keras.toml").read_text()
    spec = tmp_path / "shapes_keras.toml"
    spec.write_text(text.replace('"shapes_keras.keras"', f'"{keras_file}"').replace('"../..', f'"{ROOT}'))
    result = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert result.returncode == 2 and "damaged or truncated" in result.stderr and "File not found" not in result.stderr
    _no_traceback(result)


@pytest.mark.heavy
def test_wrong_input_shape_names_the_spec_field(tiny_project, tmp_path):
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = write_spec(tmp_path, source=src, data=tiny_project / "data")
    # Three channels (the spec's own check passes), but not a size the model's head can take.
    spec.write_text(spec.read_text().replace("shape = [1, 3, 64, 64]", "shape = [1, 3, 17, 5]"))
    result = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "inputs[0].shape" in result.stderr and "[1, 3, 17, 5]" in result.stderr
    _no_traceback(result)


@pytest.mark.heavy
def test_verify_names_the_changed_file_of_a_multi_file_artifact(tiny_spec, tmp_path):
    profile = tmp_path / "ir.toml"
    profile.write_text('name = "ir"\n[[artifacts]]\nbackend = "openvino"\nprecision = "fp32"\n'
                       'runtime_settings = { precision_hint = "f32" }\n')
    out = tmp_path / "dist"
    built = run_cli("build", str(tiny_spec), "--target", str(profile), "--out", str(out))
    assert built.returncode == 0, built.stdout + built.stderr
    weights = out / "tiny" / "ir" / "tiny_fp32.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = run_cli("verify", str(out / "tiny"))
    assert result.returncode == 1
    manifest = json.loads((out / "tiny" / "manifest.json").read_text())
    reason = manifest["artifacts"][0]["parity"]["reasons"][0]
    assert "tiny_fp32.bin" in reason and "tiny_fp32.xml" not in reason
    _no_traceback(result)
    # The checksums verify rewrote still hold the verified sha256: the changed file fails them.
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out / "tiny", capture_output=True, text=True)
    assert sums.returncode != 0 and "ir/tiny_fp32.bin: FAILED" in sums.stdout
    # And bench refuses to time a file that is not the one verified.
    bench = run_cli("bench", str(out / "tiny"), "--runs", "2", "--warmup", "0")
    assert bench.returncode == 2 and "ir/tiny_fp32.bin changed or missing" in bench.stderr, bench.stderr
    _no_traceback(bench)


@pytest.mark.parametrize("name, kind", [("model.xml", "an OpenVINO IR"), ("model.mlpackage", "a CoreML package"),
                                        ("model.pt2", "a PyTorch model")])
def test_inspect_names_what_it_cannot_read(tmp_path, name, kind):
    path = tmp_path / name
    if name.endswith(".mlpackage"):
        path.mkdir()
    else:
        path.write_text("<net/>")
    result = run_cli("inspect", str(path))
    assert result.returncode == 2 and f"{path}: {kind}" in result.stderr and ".tflite" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_given_as_the_spec_lists_the_specs_in_it(tmp_path):
    (tmp_path / "model.toml").write_text("name = 'x'\n")
    result = run_cli("build", str(tmp_path), "--out", str(tmp_path / "dist"))
    assert result.returncode == 2 and f"{tmp_path}: a folder; give the model spec file itself (here: model.toml)" \
        in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()
