"""A two-stage detector (torchvision's fasterrcnn_mobilenet_v3_large_320_fpn, random weights
scaled like a trained model's) through `source.recipe = "torchvision"`: lowered end to end
(backbone, RPN, RoIAlign, box head and NMS in the graph) for the `end2end` head, detection
parity in ONNX Runtime and OpenVINO, and the TFLite artifact refused naming the op onnx2tf
cannot convert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, detector_spec, run_cli

pytestmark = pytest.mark.heavy

K = 20   # head.max_detections: the rows of every output

PROFILE = '''\
name = "two-stage"
[[artifacts]]
backend = "onnx"
precision = "fp32"
[[artifacts]]
backend = "openvino"
precision = "fp32"
[[artifacts]]
backend = "tflite"
precision = "fp32"
'''

END2END = (f'type = "end2end"\nboxes = "boxes"\nscores = "scores"\nclasses = "classes"\ncount = "count"\n'
           f'max_detections = {K}')
IMAGENET = 'resize = "stretch"\nscale = 255.0\nmean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]'


def _spec(folder: Path, head: str = END2END, shape=(1, 3, 320, 320), factory: str = "fasterrcnn",
          outputs=("boxes", "scores", "classes", "count"), preprocess: str = IMAGENET) -> Path:
    # No source.exporter: the recipe picks the TorchScript exporter (the dynamo one cannot
    # follow the data-dependent shapes of the RPN and RoI stage).
    source = (f'kind = "torch"\nfactory = "tests.families.torchvision_models:{factory}"\nrecipe = "torchvision"\n'
              f'python_path = ["{ROOT}"]')
    return detector_spec(folder, "frcnn", source=source, shape=list(shape), outputs=list(outputs), head=head,
                         preprocess=preprocess, calibration_images=2, evaluation_images=4)


@pytest.fixture(scope="module")
def frcnn_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frcnn")
    (folder / "two_stage.toml").write_text(PROFILE)
    ran = run_cli("build", str(_spec(folder)), "--target", str(folder / "two_stage.toml"),
                  "--out", str(folder / "dist"))
    return ran, json.loads((folder / "dist" / "frcnn" / "manifest.json").read_text())


def test_two_stage_lowers_end_to_end(frcnn_build):
    _, manifest = frcnn_build
    onnx = manifest["onnx"]
    assert onnx["source_form"] == "recipe" and onnx["exporter"] == "torchscript"
    assert {"RoiAlign", "NonMaxSuppression", "TopK"} <= set(onnx["ops"])        # the RoI stage is in the graph
    shapes = {o["name"]: o["shape"] for o in onnx["outputs"]}
    assert shapes == {"boxes": [1, K, 4], "scores": [1, K], "classes": [1, K], "count": [1]}


def test_two_stage_has_detection_parity_in_onnxruntime_and_openvino(frcnn_build):
    _, manifest = frcnn_build
    built = {e["backend"]: e for e in manifest["artifacts"] if e["status"] == "built"}
    assert set(built) == {"onnx", "openvino"}
    for backend, entry in built.items():
        parity = entry["parity"]
        assert parity["verdict"] == "pass", (backend, parity["reasons"])
        assert parity["runtime"] == {"onnx": "onnxruntime", "openvino": "openvino"}[backend]
        det = parity["detection"]
        # the reference decides some confident detections on each of the 4 images, and the
        # artifact decides the same ones: same boxes, scores and classes after its own NMS
        assert det["reference_detections"] >= 8, det
        assert det["reference_detections"] < 4 * K, det       # some images pad: the zero rows are compared too
        assert det["agreement_map50"] >= 0.99 and det["agreement_map50_95"] >= 0.99, (backend, det)
        for name in ("boxes", "scores", "classes", "count"):
            assert parity["outputs"][name]["cosine"] >= 0.99999, (backend, name, parity["outputs"][name])


def test_tflite_refuses_naming_the_op(frcnn_build):
    ran, manifest = frcnn_build
    failed = {e["backend"]: e["error"] for e in manifest["artifacts"] if e["status"] == "failed"}
    assert set(failed) == {"tflite"}
    # onnx2tf stops in the branch of the If that torchvision's batched NMS exports (its empty check)
    assert "onnx2tf cannot convert ONNX node" in failed["tflite"] and "(op If)" in failed["tflite"], failed
    assert ran.returncode == 1


def test_two_stage_needs_an_end2end_head(tmp_path):
    head = 'type = "anchors"\ndeltas = "boxes"\nlogits = "scores"'
    spec = _spec(tmp_path, head=head, outputs=("boxes", "scores"))
    ran = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ("field 'head.type': FasterRCNN is a two-stage detector, lowered end to end (its RoI stage and NMS in "
            "the graph): set head.type = 'end2end'") in ran.stderr
    assert "Traceback" not in ran.stderr


def _built(spec_path: Path):
    """The recipe run in this process: (torchvision's model, the module to lower, head fields)."""
    from deployer.frontends import torch as torch_frontend
    from deployer.frontends.recipes import torchvision as recipe
    from deployer.spec import load_model_spec

    spec = load_model_spec(spec_path)
    model = recipe.make(torch_frontend._import_factory(spec), spec).eval()
    return (spec, model, *recipe.build(model, spec))


@pytest.mark.parametrize("height, width", [(320, 320), (300, 400)])
def test_graph_is_torchvisions_forward_without_the_transform(tmp_path, height, width):
    """At the spec's input size, torchvision's own forward() (resize to min/max size, which the
    recipe makes the identity, normalise, pad to a multiple of 32) gives the same detections."""
    import torch

    spec, model, part, head, _ = _built(_spec(tmp_path, shape=(1, 3, height, width)))
    assert head == {"box_format": "xyxy", "normalized": False, "class_offset": 0, "score_floor": 0.5}
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        own = model([image])[0]
        boxes, scores, classes, count = part(((image - mean) / std)[None])
    n = int(count[0])
    assert 0 < n <= K and len(own["scores"]) == n
    torch.testing.assert_close(boxes[0, :n], own["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(scores[0, :n], own["scores"])
    assert classes[0, :n].tolist() == (own["labels"] - 1).float().tolist()      # 0-based: background removed
    assert not boxes[0, n:].any() and not scores[0, n:].any()                     # zero padding
    assert float(boxes[..., 2].max()) <= width and float(boxes[..., 3].max()) <= height


def test_one_stage_refuses_an_end2end_head(tmp_path):
    from deployer.errors import UserError

    spec = _spec(tmp_path, factory="ssdlite", shape=(1, 3, 160, 160),
                 preprocess='resize = "stretch"\nscale = 255.0\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]')
    with pytest.raises(UserError, match="field 'head.type': SSD is a one-stage detector, lowered as backbone "
                                        "\\+ head for head.type = 'anchors'"):
        _built(spec)


def test_end2end_fields_that_contradict_the_graph_are_refused(tmp_path):
    from deployer.errors import UserError

    spec = _spec(tmp_path, head=END2END + "\nclass_offset = 1")
    with pytest.raises(UserError, match="field 'head.class_offset': the FasterRCNN graph outputs xyxy boxes"):
        _built(spec)
