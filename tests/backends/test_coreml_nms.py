"""CoreML with NMS in the graph: a Pipeline of the ML program (converted from decoded.onnx) and
Core ML's NonMaximumSuppression model, built by the backend's stages as the build calls them
and run by the coreml runner (MIL interpreter + the NMS stage in numpy) on Linux.

The detector is a small convolutional one made here (random weights, seeded), exported as the
two ONNX files deployer writes for `[head] nms = "graph"`: decoded.onnx (boxes, scores) and
model_nms.onnx (ONNX NonMaxSuppression, padded to max_detections). The artifacts' detections
are compared with (a) the same NMS semantics in numpy on decoded.onnx's outputs in ONNX
Runtime (each box under its best class: what Core ML's stage does), (b) deployer's class-wise
NMS on those outputs (every class above the threshold a candidate) and (c) model_nms.onnx in
ONNX Runtime (the reference parity uses in a build).
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest

from deployer.errors import StageError
from deployer.spec import DataSpec, Head, InputSpec, ModelSpec, Preprocess, Source
from deployer.worker import WorkerPool, run_stage

pytestmark = pytest.mark.heavy

SIZE, STRIDE, LABELS = 64, 8, ["red", "green", "blue"]
SCORE, IOU, K = 0.25, 0.45, 25
OUTPUTS = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
IMAGES = 12
TIMEOUT = 300


def _detector():
    """8x8 cells, each with a box (xyxy pixels) and class probabilities: objectness times a
    softmax, so a box seldom has two classes above the threshold."""
    import torch
    from torch import nn

    class CellDet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
            self.head = nn.Conv2d(16, 5 + len(LABELS), 1)
            cells = (torch.arange(SIZE // STRIDE, dtype=torch.float32) + 0.5) * STRIDE
            yy, xx = torch.meshgrid(cells, cells, indexing="ij")
            self.register_buffer("centres", torch.stack([xx, yy], -1).reshape(1, -1, 2))

        def forward(self, x):
            f = self.head(self.body(x)).flatten(2).transpose(1, 2)
            centre = self.centres + torch.tanh(f[..., :2]) * STRIDE
            size = torch.exp(f[..., 2:4].clamp(-2, 2)) * 2 * STRIDE
            boxes = torch.cat([centre - size / 2, centre + size / 2], -1)
            return boxes, torch.sigmoid(f[..., 4:5]) * torch.softmax(5 * f[..., 5:], -1)

    torch.manual_seed(0)
    model = CellDet().eval()
    with torch.no_grad():   # PyTorch's default init gives near-constant scores on these images
        for conv in (*model.body[::2], model.head):
            nn.init.kaiming_normal_(conv.weight)
            nn.init.normal_(conv.bias, 0, 0.5)
    return model


def _images(n: int, seed: int) -> np.ndarray:
    """Flat backgrounds with a few flat rectangles, 0..1 (the spec's preprocessing: pixels / 255)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, 3, SIZE, SIZE), np.float32)
    for image in out[:, 0]:
        image[:] = rng.uniform(0, 1, (3, 1, 1))
        for _ in range(rng.integers(3, 7)):
            x, y = rng.integers(0, SIZE - 8, 2)
            w, h = rng.integers(8, 32, 2)
            image[:, y:y + h, x:x + w] = rng.uniform(0, 1, (3, 1, 1))
    # The ImageType input takes 8-bit pixels: give the reference the same ones.
    return np.round(out * 255) / 255


def _model_nms(decoded: Path, path: Path) -> None:
    """decoded.onnx + ONNX NonMaxSuppression, the finished outputs padded with zeros to K."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(decoded))
    g = model.graph
    consts = {"max_out": (TensorProto.INT64, [K]), "iou": (TensorProto.FLOAT, [IOU]),
              "score": (TensorProto.FLOAT, [SCORE]), "k": (TensorProto.INT64, [K]), "zero": (TensorProto.INT64, [0]),
              "col1": (TensorProto.INT64, [1]), "col2": (TensorProto.INT64, [2]), "axis0": (TensorProto.INT64, [0])}
    g.initializer.extend(helper.make_tensor(n, t, [len(v)], v) for n, (t, v) in consts.items())
    node = helper.make_node
    g.node.extend([
        node("Transpose", ["scores"], ["scores_cn"], perm=[0, 2, 1]),
        node("NonMaxSuppression", ["boxes", "scores_cn", "max_out", "iou", "score"], ["selected"]),
        node("GatherND", ["scores_cn", "selected"], ["sel_scores"]),
        node("Gather", ["selected", "col1"], ["sel_class2"], axis=1),
        node("Gather", ["selected", "col2"], ["sel_box2"], axis=1),
        node("Squeeze", ["sel_class2", "col1"], ["sel_class"]),
        node("Squeeze", ["sel_box2", "col1"], ["sel_box"]),
        node("Shape", ["sel_scores"], ["found"]),
        node("Min", ["found", "k"], ["kept"]),
        node("TopK", ["sel_scores", "kept"], ["top_scores", "top"], axis=0),
        node("Gather", ["sel_box", "top"], ["top_box"]),
        node("Gather", ["sel_class", "top"], ["top_class"]),
        node("Squeeze", ["boxes", "axis0"], ["boxes_n4"]),
        node("Gather", ["boxes_n4", "top_box"], ["top_boxes"]),
        node("Sub", ["k", "kept"], ["short"]),
        node("Concat", ["zero", "zero", "short", "zero"], ["pads_2d"], axis=0),
        node("Concat", ["zero", "short"], ["pads_1d"], axis=0),
        node("Pad", ["top_boxes", "pads_2d"], ["boxes_k"]),
        node("Pad", ["top_scores", "pads_1d"], ["scores_k"]),
        node("Cast", ["top_class"], ["class_f"], to=TensorProto.FLOAT),
        node("Pad", ["class_f", "pads_1d"], ["classes_k"]),
        node("Unsqueeze", ["boxes_k", "axis0"], ["detection_boxes"]),
        node("Unsqueeze", ["scores_k", "axis0"], ["detection_scores"]),
        node("Unsqueeze", ["classes_k", "axis0"], ["detection_classes"]),
        node("Cast", ["kept"], ["num_detections"], to=TensorProto.FLOAT),
    ])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, K, 4]),
                     helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, K]),
                     helper.make_tensor_value_info("detection_classes", TensorProto.FLOAT, [1, K]),
                     helper.make_tensor_value_info("num_detections", TensorProto.FLOAT, [1])])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _derived_spec(model_nms: Path) -> ModelSpec:
    """The spec the build hands the backend for `[head] nms = "graph"`."""
    head = Head(type="end2end", score_threshold=SCORE, iou_threshold=IOU, max_detections=K,
                params={"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
                        "count": "num_detections", "box_format": "xyxy", "normalized": False, "class_offset": 0,
                        "score_floor": SCORE, "graph_nms": True})
    return ModelSpec(name="celldet", source=Source(kind="onnx", path=str(model_nms)),
                     inputs=[InputSpec("images", [1, 3, SIZE, SIZE])], outputs=list(OUTPUTS), preprocess=Preprocess(),
                     head=head, labels=list(LABELS), data=DataSpec())


def _ort(path: Path, images: np.ndarray) -> list[dict]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(None, {"images": x}))) for x in images]


def _stack(outputs: list[dict]) -> dict:
    return {k: np.stack([o[k] for o in outputs]) for k in outputs[0]}


@pytest.fixture(scope="module")
def nms_build(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("coreml_nms")
    onnx_dir = folder / "onnx"
    onnx_dir.mkdir()
    decoded, model_nms = onnx_dir / "decoded.onnx", onnx_dir / "model_nms.onnx"
    torch.onnx.export(_detector(), (torch.zeros(1, 3, SIZE, SIZE),), str(decoded), input_names=["images"],
                      output_names=["boxes", "scores"], opset_version=17, dynamo=False)
    _model_nms(decoded, model_nms)
    spec = _derived_spec(model_nms)
    images = _images(IMAGES, seed=3)
    inputs = folder / "inputs.npz"
    np.savez(inputs, images=images)
    expected = {"detection_boxes": [1, K, 4], "detection_scores": [1, K], "detection_classes": [1, K],
                "num_detections": [1]}
    prebuilt = folder / "prebuilt"
    prebuilt.mkdir()
    common = {"onnx_path": str(model_nms), "spec": spec.to_dict(), "options": {}, "calibration": ""}
    # As a build runs them: the backend's stages in a torch worker (an ONNX source), the runs in
    # a coreml worker, each imported once; the int8 build overlaps the fp16 run.
    pool = WorkerPool(2, folder / "logs")

    def build_and_run(precision: str) -> dict:
        out = folder / precision
        out.mkdir()
        built = pool.run("torch", "deployer.backends.coreml:build",
                         {**common, "precision": precision, "out_dir": str(out), "stem": f"celldet_{precision}",
                          "prebuilt": str(prebuilt)}, f"build-{precision}", TIMEOUT)
        package = out / built.value["path"]
        described = pool.run("coreml", "tests.backends.coreml_nms_check:describe", {"package": str(package)},
                             f"describe-{precision}", TIMEOUT)
        outputs = folder / f"outputs-{precision}.npz"
        ran = pool.run("coreml", "deployer.runtimes.run:run_inputs",
                       {"runtime": "coreml", "artifact": str(package), "spec": spec.to_dict(), "inputs": str(inputs),
                        "outputs": str(outputs), "settings": {}, "expected_outputs": expected}, f"run-{precision}",
                       TIMEOUT)
        return {"built": built.value, "described": described.value, "ran": ran.value, "package": package,
                "outputs": dict(np.load(outputs))}

    try:
        converted = pool.run("torch", "deployer.backends.coreml:convert", {**common, "out_dir": str(prebuilt)},
                             "convert", TIMEOUT)
        with concurrent.futures.ThreadPoolExecutor(2) as threads:
            artifacts = dict(zip(("fp16", "int8"), threads.map(build_and_run, ("fp16", "int8"))))
    finally:
        pool.close()
    return {"spec": spec, "converted": converted.value, "artifacts": artifacts, "images": images,
            "decoded": _stack(_ort(decoded, images)), "model_nms": _stack(_ort(model_nms, images))}


def _vision_reference(decoded: dict) -> list:
    """Core ML's NMS stage in numpy by other means: each box only under its best class (the
    others zeroed), then deployer's class-wise NMS."""
    from deployer.parity.detection import decode_boxes_scores

    dets = []
    for boxes, scores in zip(decoded["boxes"], decoded["scores"]):
        scores = scores[0]
        best = scores * (np.arange(scores.shape[1]) == scores.argmax(1)[:, None])
        dets.append(decode_boxes_scores(boxes[0], best, "xyxy", SCORE, IOU, K))
    return dets


def _finished(outputs: dict, spec: ModelSpec) -> list:
    from deployer.heads.end2end import HEAD

    return HEAD.decode(outputs, spec, SCORE)


def test_artifact_is_a_pipeline_ending_in_vision_nms(nms_build):
    for precision, artifact in nms_build["artifacts"].items():
        d = artifact["described"]
        assert artifact["package"].suffix == ".mlpackage" and (artifact["package"] / "Manifest.json").is_file()
        assert d["type"] == "pipeline" and d["models"] == ["mlProgram", "nonMaximumSuppression"], d
        assert d["chained"], "each stage's inputs must be the pipeline's inputs or an earlier stage's outputs"
        assert d["inputs"][0]["name"] == "images" and d["inputs"][0]["type"] == "imageType"
        assert [o["name"] for o in d["outputs"]] == ["confidence", "coordinates"]
        nms = d["nms"]
        assert nms["method"] == "pickTop" and nms["per_class"] is True
        assert nms["iou_threshold"] == pytest.approx(IOU) and nms["confidence_threshold"] == pytest.approx(SCORE)
        assert nms["labels"] == LABELS and nms["outputs"] == ["confidence", "coordinates"]
        assert [f["ranges"] for f in nms["features_out"]] == [[[0, K], [len(LABELS)] * 2], [[0, K], [4, 4]]]
        # The program feeds the stage float32 (N, C) and (N, 4): no batch dimension.
        n = (SIZE // STRIDE) ** 2
        assert [f["shape"] for f in d["program_outputs"]] == [[n, len(LABELS)], [n, 4]]
        assert {f["dtype"] for f in nms["features_in"]} == {65568}   # ArrayDataType FLOAT32
        meta = d["metadata"]
        assert '"graph_nms": true' in meta["deployer.head"] and "deployer.labels" in meta
        assert "deployer.image_input" in meta and "deployer.nms" in meta
        notes = " ".join(artifact["built"]["notes"])
        assert "NMS pipeline stage: Vision's NonMaximumSuppression" in notes and "decoded.onnx" in notes
        assert ("constexpr_affine_dequantize" in d["program_ops"]
                or "constexpr_blockwise_shift_scale" in d["program_ops"]) == (precision == "int8")
    sizes = {p: sum(f.stat().st_size for f in a["package"].rglob("*") if f.is_file())
             for p, a in nms_build["artifacts"].items()}
    assert sizes["int8"] < sizes["fp16"]


def test_interpreter_runs_both_artifacts_with_the_finished_outputs(nms_build):
    for artifact in nms_build["artifacts"].values():
        out, ran = artifact["outputs"], artifact["ran"]
        assert ran["settings"]["engine"].startswith("deployer MIL interpreter") and "NonMaximumSuppression" in \
            ran["settings"]["nms"]
        assert out["detection_boxes"].shape == (IMAGES, 1, K, 4) and out["num_detections"].shape == (IMAGES, 1)
        counts = out["num_detections"][:, 0].astype(int)
        assert 0 < counts.min() and counts.max() <= K
        for i, k in enumerate(counts):
            scores = out["detection_scores"][i, 0]
            assert (np.diff(scores[:k]) <= 0).all(), "rows in descending score order"
            assert (scores[:k] >= SCORE).all() and not out["detection_boxes"][i, 0, k:].any()
            assert not scores[k:].any() and not out["detection_classes"][i, 0, k:].any()
            assert set(out["detection_classes"][i, 0, :k].astype(int)) <= set(range(len(LABELS)))


def _classwise_reference(decoded: dict) -> list:
    """deployer's class-wise NMS (every class above the threshold a candidate), as parity
    decodes a boxes + scores head."""
    from deployer.parity.detection import decode_boxes_scores

    return [decode_boxes_scores(b[0], s[0], "xyxy", SCORE, IOU, K) for b, s in zip(decoded["boxes"], decoded["scores"])]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_detections_agree_with_numpy_and_onnx_nms(nms_build, precision):
    from deployer.parity.detection import mean_average_precision

    spec = nms_build["spec"]
    got = _finished(nms_build["artifacts"][precision]["outputs"], spec)
    references = {"numpy, best class only": _vision_reference(nms_build["decoded"]),
                  "numpy class-wise": _classwise_reference(nms_build["decoded"]),
                  "onnx NonMaxSuppression": _finished(nms_build["model_nms"], spec)}
    # model_nms.onnx is deployer's class-wise NMS; a box under a second class above the
    # threshold is all that tells it from Core ML's stage, and these images have few.
    assert mean_average_precision(references["numpy class-wise"], references["onnx NonMaxSuppression"],
                                  max_dets=K)["map50_95"] >= 0.999
    assert mean_average_precision(references["numpy, best class only"], references["numpy class-wise"],
                                  max_dets=K)["map50_95"] >= 0.97
    counts = np.array([len(d.scores) for d in got])
    candidates = sum(int((s[0].max(1) >= SCORE).sum()) for s in nms_build["decoded"]["scores"])
    assert candidates > 2 * counts.sum(), "the NMS stage must have had boxes to suppress"
    assert (counts == K).any() and (counts < K).any(), "both a full and a partial set of rows"
    for name, reference in references.items():
        agreement = mean_average_precision(got, reference, max_dets=K)
        assert agreement["map50_95"] >= 0.95, (name, agreement)
        want = np.array([len(d.scores) for d in reference])
        assert np.abs(counts - want).max() <= 1 and abs(int(counts.sum() - want.sum())) <= 2, (name, counts, want)


def test_a_missing_decoded_onnx_fails_the_conversion_clearly(tmp_path):
    model_nms = tmp_path / "model_nms.onnx"
    model_nms.write_bytes(b"")
    spec = _derived_spec(model_nms)
    with pytest.raises(StageError, match=r"NMS in the graph needs .*decoded\.onnx"):
        run_stage("deployer.backends.coreml:convert",
                  {"onnx_path": str(model_nms), "spec": spec.to_dict(), "options": {}, "calibration": "",
                   "out_dir": str(tmp_path)}, workdir=tmp_path / "work", name="convert")


def _centre(xyxy) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float32)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)


def test_nms_stage_semantics():
    """NonMaximumSuppression.proto: a box's label is the argmax of its confidences; perClass
    suppresses only within a label; below confidenceThreshold is removed (at it is kept); IoU
    above iouThreshold suppresses (1.0: nothing is); most confident first; nothing passing is
    nothing returned."""
    from deployer.runtimes.coreml_ops import nms_model

    boxes = _centre([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [21, 20, 31, 30], [40, 40, 50, 50]])
    confidence = np.array([[0.9, 0.0], [0.3, 0.8], [0.6, 0.1], [0.5, 0.2], [0.25, 0.1]], np.float32)
    # box 1 is box 0's twin (IoU 0.9) but its best class is 1: kept per class, once, as class 1
    np.testing.assert_array_equal(nms_model(confidence, boxes, 0.45, 0.25, True), [0, 1, 2, 4])
    np.testing.assert_array_equal(nms_model(confidence, boxes, 0.45, 0.25, False), [0, 2, 4])
    np.testing.assert_array_equal(nms_model(confidence, boxes, 1.0, 0.25, False), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(nms_model(confidence, boxes, 0.45, 0.26, True, max_boxes=2), [0, 1])
    assert nms_model(confidence, boxes, 0.45, 0.95, True).size == 0
    # boxes 2 and 3: IoU 90/110 = 0.818...; a threshold at it keeps both
    iou = 90 / 110
    np.testing.assert_array_equal(nms_model(confidence[2:4], boxes[2:4], np.float32(iou), 0.0, True), [0, 1])
    np.testing.assert_array_equal(nms_model(confidence[2:4], boxes[2:4], iou - 1e-3, 0.0, True), [0])


def test_finished_detections_from_the_stage_outputs():
    from deployer.runtimes.coreml import finished_detections

    spec = _derived_spec(Path("model_nms.onnx"))
    coordinates = _centre([[8, 16, 24, 48], [0, 0, 64, 32]]) / SIZE
    out = finished_detections({"confidence": np.array([[0.1, 0.7, 0.2], [0.5, 0.0, 0.3]], np.float32),
                               "coordinates": coordinates}, spec)
    assert out["detection_boxes"].shape == (1, K, 4) and out["num_detections"].tolist() == [2.0]
    np.testing.assert_allclose(out["detection_boxes"][0, :2], [[8, 16, 24, 48], [0, 0, 64, 32]], atol=1e-4)
    np.testing.assert_allclose(out["detection_scores"][0, :2], [0.7, 0.5])
    assert out["detection_classes"][0, :2].tolist() == [1.0, 0.0]
    assert not out["detection_boxes"][0, 2:].any() and not out["detection_scores"][0, 2:].any()
    many = finished_detections({"confidence": np.full((K + 5, 3), 0.5, np.float32),
                                "coordinates": np.full((K + 5, 4), 0.5, np.float32)}, spec)
    assert many["num_detections"].tolist() == [float(K)] and many["detection_scores"].shape == (1, K)
    empty = finished_detections({"confidence": np.zeros((0, 3), np.float32),
                                 "coordinates": np.zeros((0, 4), np.float32)}, spec)
    assert empty["num_detections"].tolist() == [0.0] and not empty["detection_boxes"].any()
