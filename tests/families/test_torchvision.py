"""torchvision detectors through `source.recipe = "torchvision"`: backbone + head lowered,
the model's own anchors and box coder handed to the `anchors` head, detection parity in
ONNX Runtime, OpenVINO and CoreML (deployer's interpreter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, detector_spec, run_cli

# CoreML fp16 of an untrained MobileNetV3 (random activations, no BN folding benefits) drifts
# more than a trained one: cosine ~0.9990. The detection agreement is still checked.
PROFILE = '''\
name = "anchors"
[[artifacts]]
backend = "onnx"
precision = "fp32"
[[artifacts]]
backend = "openvino"
precision = "fp32"
[[artifacts]]
backend = "coreml"
precision = "fp16"
thresholds = { min_cosine = 0.998, min_agreement_map50 = 0.9 }
[[artifacts]]
backend = "onnx"
precision = "fp32"
nms = "graph"               # the anchors decoding and NMS in the graph
[[artifacts]]
backend = "openvino"
precision = "fp32"
nms = "graph"
'''


def _spec(folder: Path, mean: str = "[0.5, 0.5, 0.5]", std: str = "[0.5, 0.5, 0.5]",
          head: str = 'type = "anchors"\ndeltas = "deltas"\nlogits = "logits"') -> Path:
    # No source.exporter: the recipe picks the TorchScript exporter (five times faster here).
    source = (f'kind = "torch"\nfactory = "tests.families.torchvision_models:ssdlite"\nrecipe = "torchvision"\n'
              f'python_path = ["{ROOT}"]')
    return detector_spec(folder, "ssdlite", source=source, shape=[1, 3, 160, 160], outputs=["deltas", "logits"],
                         head=head, preprocess=f'resize = "stretch"\nscale = 255.0\nmean = {mean}\nstd = {std}',
                         calibration_images=4)


@pytest.fixture(scope="module")
def ssdlite_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ssdlite")
    (folder / "anchors.toml").write_text(PROFILE)
    ran = run_cli("build", str(_spec(folder)), "--target", str(folder / "anchors.toml"), "--out", str(folder / "dist"))
    return ran, folder / "dist" / "ssdlite"


def test_ssdlite_has_detection_parity(ssdlite_build):
    ran, model_dir = ssdlite_build
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["onnx"]["source_form"] == "recipe" and manifest["onnx"]["exporter"] == "torchscript"
    for entry in manifest["artifacts"]:
        det = entry["parity"]["detection"]
        assert entry["parity"]["verdict"] == "pass", (entry["backend"], entry["parity"]["reasons"])
        assert det["reference_detections"] > 0
        floor = 0.9 if entry["backend"] == "coreml" else 0.99
        assert det["agreement_map50"] >= floor, (entry["backend"], det)


def test_recipe_writes_the_models_anchors_and_coder(ssdlite_build):
    _, model_dir = ssdlite_build
    head = json.loads((model_dir / "anchors" / "deployer.json").read_text())["head"]
    assert head["box_coder_weights"] == [10.0, 10.0, 5.0, 5.0]          # SSD's coder
    assert (head["activation"], head["background"]) == ("softmax", 0)
    anchors = np.load(head["anchors"])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    deltas = next(o for o in manifest["onnx"]["outputs"] if o["name"] == "deltas")
    assert anchors.shape == (deltas["shape"][1], 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2                # xyxy in the 160 px input
    assert centres.min() >= 0 and centres.max() <= 160 and (anchors[:, 2:] > anchors[:, :2]).all()


def test_recipe_refuses_a_normalisation_that_differs_from_the_models(tmp_path):
    (tmp_path / "anchors.toml").write_text(PROFILE)
    spec = _spec(tmp_path, mean="[0.0, 0.0, 0.0]", std="[1.0, 1.0, 1.0]")
    ran = run_cli("build", str(spec), "--target", str(tmp_path / "anchors.toml"), "--out", str(tmp_path / "dist"))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "field 'preprocess': the model normalises with mean [0.5, 0.5, 0.5]" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_recipe_needs_an_anchors_head(tmp_path):
    spec = _spec(tmp_path, head='type = "raw"')
    ran = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert ran.returncode == 2
    assert "field 'head.type': the 'torchvision' recipe's outputs need head.type = 'anchors' or 'end2end', got 'raw'" in ran.stderr
