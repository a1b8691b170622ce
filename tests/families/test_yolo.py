"""YOLO-family sources end to end: a TorchScript file with the Ultralytics v8 output layout
built for every backend with detection parity through the `yolo` head (and the demo page
drawing the reference's boxes), and a user's factory that wraps a loaded TorchScript model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, detector_spec, run_cli

FLOAT_PROFILE = Path(__file__).resolve().parent / "float.toml"


LETTERBOX = 'resize = "letterbox"\npad_value = 114\nscale = 255.0'


def _spec(folder: Path, name: str, source: str, outputs: list[str], head: str) -> Path:
    return detector_spec(folder, name, source=source, shape=[1, 3, 192, 192], outputs=outputs, head=head,
                         preprocess=LETTERBOX)


@pytest.fixture(scope="module")
def yolo_torchscript(tmp_path_factory) -> Path:
    """The example's trained detector exported as an Ultralytics-style TorchScript (1, 8, N)."""
    folder = tmp_path_factory.mktemp("yolo")
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]);"
            "from tests.families.yolo_model import shapes_yolo_v8;"
            "torch.jit.trace(shapes_yolo_v8(), torch.zeros(1, 3, 192, 192)).save(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(folder / "yolo.torchscript"), str(ROOT)], check=True,
                   capture_output=True)
    return folder / "yolo.torchscript"


@pytest.fixture(scope="module")
def yolo_build(yolo_torchscript, tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo_build")
    spec = _spec(folder, "yolov8ts", f'kind = "torch"\npath = "{yolo_torchscript}"', ["output0"],
                 'type = "yolo"\noutput = "output0"')
    ran = run_cli("build", str(spec), "--target", str(FLOAT_PROFILE), "--out", str(folder / "dist"))
    manifest = json.loads((folder / "dist" / "yolov8ts" / "manifest.json").read_text())
    return ran, manifest


def test_yolo_torchscript_has_detection_parity_everywhere(yolo_build):
    ran, manifest = yolo_build
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert manifest["onnx"]["outputs"][0]["shape"] == [1, 8, 756]
    entries = manifest["artifacts"]
    assert {e["backend"] for e in entries} == {"onnx", "tfjs", "tflite", "openvino", "coreml"}
    for entry in entries:
        for run in entry["parity"].get("runs", [entry["parity"]]):
            det = run["detection"]
            assert run["verdict"] == "pass", (entry["backend"], run["runtime"], run["reasons"])
            assert det["reference_detections"] > 0
            assert det["agreement_map50_95"] > 0.99, (entry["backend"], run["runtime"], det)
            # The source itself finds the shapes: labelled mAP is real, not a decoding artefact.
            assert det["reference_map50"] > 0.5


def test_yolo_head_is_completed_from_the_output_shape(yolo_build):
    _, manifest = yolo_build
    model_dir = Path(manifest["spec"]).parent / "dist" / "yolov8ts"
    head = json.loads((model_dir / "float" / "deployer.json").read_text())["head"]
    assert (head["type"], head["layout"], head["channels_first"]) == ("yolo", "v8", True)


def test_demo_page_draws_the_yolo_references_boxes(yolo_build):
    _, manifest = yolo_build
    page = manifest["targets"]["float"]["page"]
    assert page["verdict"] == "pass", page
    for name, m in page["models"].items():
        assert m["reference"] > 0 and m["matched"] == m["reference"], (name, m)
        assert m["page_matched"] == m["page"], (name, m)


def test_yolo_with_wrong_labels_names_the_shape(yolo_torchscript, tmp_path):
    spec = _spec(tmp_path, "wrong", f'kind = "torch"\npath = "{yolo_torchscript}"', ["output0"],
                 'type = "yolo"\noutput = "output0"')
    spec.write_text(spec.read_text().replace('"triangle", "star"', '"triangle"'))
    ran = run_cli("build", str(spec), "--target", str(FLOAT_PROFILE), "--out", str(tmp_path / "dist"))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "head.output 'output0' has shape [1, 8, 756], which does not fit 3 labels" in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr


def test_factory_wrapping_torchscript_lowers_and_verifies(yolo_torchscript, tmp_path):
    """A factory holding a loaded ScriptModule: lowered (traced first), verified with a
    cxcywh boxes_scores head."""
    (tmp_path / "wrapper.py").write_text(textwrap.dedent(f'''\
        from tests.families.yolo_model import Wrapped

        def build():
            return Wrapped({str(yolo_torchscript)!r})
        '''))
    spec = _spec(tmp_path, "wrapped", f'kind = "torch"\nfactory = "wrapper:build"\npython_path = ["{ROOT}", "{tmp_path}"]',
                 ["boxes", "scores"], 'type = "boxes_scores"\nboxes = "boxes"\nscores = "scores"\nbox_format = "cxcywh"')
    profile = tmp_path / "onnx.toml"
    profile.write_text('name = "onnx"\n[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n')
    ran = run_cli("build", str(spec), "--target", str(profile), "--out", str(tmp_path / "dist"))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    manifest = json.loads((tmp_path / "dist" / "wrapped" / "manifest.json").read_text())
    assert "traced with torch.jit.trace first" in manifest["onnx"]["exporter_note"]
    det = manifest["artifacts"][0]["parity"]["detection"]
    assert det["agreement_map50_95"] > 0.99 and det["reference_map50"] > 0.5
