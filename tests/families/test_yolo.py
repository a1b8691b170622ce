"""YOLO-family sources end to end: a TorchScript file with the Ultralytics v8 output layout
built for every backend with detection parity through the `yolo` head (and the demo page
drawing the reference's boxes), and a user's factory that wraps a loaded TorchScript model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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


NMS_PROFILE = '''\
name = "nms"
page = true
[[artifacts]]
backend = "onnx"
precision = "fp32"
nms = "graph"
runtime = ["onnxruntime", "ort-web-node"]
[[artifacts]]
backend = "tfjs"
precision = "fp32"
nms = "graph"
runtime = ["tfjs-node"]
[[artifacts]]
backend = "tflite"
precision = "fp32"
nms = "graph"
[[artifacts]]
backend = "openvino"
precision = "fp32"
nms = "graph"
[[artifacts]]
backend = "openvino"
precision = "int8"
nms = "graph"
[[artifacts]]
backend = "coreml"
precision = "fp16"
nms = "graph"               # Vision's NMS as the pipeline's last stage
'''


@pytest.fixture(scope="module")
def yolo_nms_build(yolo_torchscript, tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo_nms")
    (folder / "nms.toml").write_text(NMS_PROFILE)
    spec = _spec(folder, "yolonms", f'kind = "torch"\npath = "{yolo_torchscript}"', ["output0"],
                 'type = "yolo"\noutput = "output0"')
    ran = run_cli("build", str(spec), "--target", str(folder / "nms.toml"), "--out", str(folder / "dist"))
    return ran, folder / "dist" / "yolonms"


def test_graph_nms_artifacts_give_the_references_detections(yolo_nms_build):
    """[head] nms = "graph": every backend's artifact outputs finished detections, judged by
    agreement with the source decoded by deployer (no raw tensors to compare)."""
    ran, model_dir = yolo_nms_build
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {e["backend"] for e in manifest["artifacts"]} == {"onnx", "tfjs", "tflite", "openvino", "coreml"}
    for entry in manifest["artifacts"]:
        assert entry["nms"] == "graph" and entry["variant"] == "nms"
        for run in entry["parity"].get("runs", [entry["parity"]]):
            det = run["detection"]
            assert run["verdict"] == "pass", (entry["backend"], run["runtime"], run["reasons"])
            assert run["outputs"] == {} and det["reference_detections"] > 0
            figure, floor = ("agreement_map50", 0.9) if entry["precision"] == "int8" else ("agreement_map50_95", 0.99)
            assert det[figure] >= floor, (entry["backend"], run["runtime"], det)
            assert set(run["thresholds"]) <= {"min_agreement_map50_95", "min_agreement_map50", "max_map50_drop",
                                              "max_map50_95_drop"}
    page = manifest["targets"]["nms"]["page"]
    assert page["verdict"] == "pass", page


def test_graph_nms_outputs_are_what_an_app_reads(yolo_nms_build):
    """The ONNX artifact alone: four fixed-shape outputs, the count first rows real, the rest zeros."""
    import onnxruntime as ort

    _, model_dir = yolo_nms_build
    deployed = json.loads((model_dir / "nms" / "deployer.json").read_text())
    onnx_entry = next(a for a in deployed["artifacts"] if a["backend"] == "onnx")
    assert onnx_entry["head"]["type"] == "end2end" and onnx_entry["outputs"][0] == "detection_boxes"
    session = ort.InferenceSession(str(model_dir / "nms" / Path(onnx_entry["path"]).name))
    inputs = np.load(model_dir / ".work" / "eval_inputs.npz")["images"][:4]
    for image in inputs:
        boxes, scores, classes, count = session.run(None, {"images": image.reshape(1, 3, 192, 192)})
        n = int(count[0])
        assert boxes.shape == (1, 100, 4) and 0 < n < 100
        assert (scores[0, :n] >= 0.25).all() and not scores[0, n:].any() and not boxes[0, n:].any()
        assert (np.diff(scores[0, :n]) <= 0).all()                # best first
        assert set(classes[0, :n].astype(int)) <= set(range(4))


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
