"""Head types: each numpy decoder on arrays with known answers, its spec checks, and its
JavaScript twin (deployer/runtimes/js/heads.mjs, used by the demo page) on the same arrays."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from deployer.errors import UserError
from deployer.heads import registry as heads
from deployer.heads.anchors import decode_deltas
from deployer.spec import Head, InputSpec
from tests.heads.cases import CASES, Spec, scene

JS_HEADS = (__import__("pathlib").Path(__file__).resolve().parents[2] / "deployer" / "runtimes" / "js" / "heads.mjs")


def _decode(case: str, threshold: float | None = None):
    spec, outputs, _ = CASES[case]()
    return heads()[spec.head.type].decode(outputs, spec, threshold if threshold is not None else spec.head.score_threshold)


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoder_finds_the_objects_it_was_given(case):
    """Every case encodes the same scene (three objects, one pair of near-duplicates): each
    decoder must give back exactly those boxes, labels and scores."""
    spec, outputs, expected = CASES[case]()
    dets = heads()[spec.head.type].decode(outputs, spec, spec.head.score_threshold)[0]
    order = np.argsort(-dets.scores)
    assert dets.labels[order].tolist() == expected.labels.tolist()
    np.testing.assert_allclose(dets.boxes[order], expected.boxes, atol=0.05)
    np.testing.assert_allclose(dets.scores[order], expected.scores, atol=1e-4)


def test_yolo_layout_is_inferred_and_checked_against_labels():
    complete = heads()["yolo"].complete
    labels = ["a", "b", "c"]
    v8 = complete({"output": "y", "layout": ""}, {"y": [1, 7, 84]}, labels, {})
    assert (v8["layout"], v8["channels_first"]) == ("v8", True)
    v5 = complete({"output": "y", "layout": ""}, {"y": [1, 84, 8]}, labels, {})
    assert (v5["layout"], v5["channels_first"]) == ("v5", False)
    rows = complete({"output": "y", "layout": "v8"}, {"y": [1, 84, 7]}, labels, {})
    assert rows["channels_first"] is False
    with pytest.raises(UserError, match=r"does not fit 3 labels .*v8: 4 \+ 3 = 7 columns"):
        complete({"output": "y", "layout": ""}, {"y": [1, 84, 10]}, labels, {})


def test_anchors_head_checks_shapes_against_its_anchors(tmp_path):
    path = tmp_path / "anchors.npy"
    np.save(path, np.zeros((10, 4), np.float32))
    complete = heads()["anchors"].complete
    params = {"deltas": "d", "logits": "l", "anchors": str(path), "background": 0}
    assert complete(params, {"d": [1, 10, 4], "l": [1, 10, 3]}, ["a", "b"], {})["anchors"] == str(path)
    with pytest.raises(UserError, match=r"expected \(1, 10, 4\)"):
        complete(params, {"d": [1, 12, 4], "l": [1, 10, 3]}, ["a", "b"], {})
    with pytest.raises(UserError, match=r"expected \(1, 10, 3\) \(2 labels \+ the background class 0\)"):
        complete(params, {"d": [1, 10, 4], "l": [1, 10, 2]}, ["a", "b"], {})
    with pytest.raises(UserError, match="needs the anchors"):
        complete({**params, "anchors": ""}, {"d": [1, 10, 4], "l": [1, 10, 3]}, ["a", "b"], {})
    # A recipe's anchors and coder fill the head.
    filled = complete({**params, "anchors": ""}, {"d": [1, 10, 4], "l": [1, 10, 3]}, ["a", "b"],
                      {"head": {"anchors": str(path), "box_coder_weights": [10.0, 10.0, 5.0, 5.0]}})
    assert filled["box_coder_weights"] == [10.0, 10.0, 5.0, 5.0]


def test_box_coder_matches_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.models.detection._utils import BoxCoder

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (50, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(4, 80, (50, 2))], 1).astype(np.float32)
    deltas = rng.normal(0, 1, (50, 4)).astype(np.float32)
    deltas[0, 2] = 20.0  # beyond the clamp
    weights = (10.0, 10.0, 5.0, 5.0)
    expected = BoxCoder(weights).decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode_deltas(deltas, anchors, weights, "xywh"), expected, rtol=1e-5, atol=1e-3)


def test_end2end_keeps_the_models_own_rows_and_count():
    spec, outputs, _ = CASES["end2end"]()
    outputs = {**outputs, "num": np.array([1.0], np.float32)}
    dets = heads()["end2end"].decode(outputs, spec, 0.0)[0]
    assert len(dets.scores) == 1


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (make setup)")
def test_javascript_decoders_match_numpy():
    """The demo page's decoders (heads.mjs) on the very arrays the numpy decoders get."""
    cases = {}
    for name, make in CASES.items():
        spec, outputs, _ = make()
        head_type = heads()[spec.head.type]
        head = {**spec.head.to_dict(), **(head_type.page_data(spec.head.params) if head_type.page_data else {})}
        cases[name] = {"head": head, "ctx": {"numClasses": len(spec.labels), "width": spec.inputs[0].width,
                                             "height": spec.inputs[0].height},
                       "outputs": {k: {"data": v[0].reshape(-1).tolist(), "shape": list(v[0:1].shape)}
                                   for k, v in outputs.items()}}
    script = (f"import {{ decode }} from {json.dumps(JS_HEADS.as_uri())};\n"
              "let s = ''; process.stdin.on('data', d => s += d); process.stdin.on('end', () => {\n"
              "  const cases = JSON.parse(s), out = {};\n"
              "  for (const [name, c] of Object.entries(cases)) {\n"
              "    const o = Object.fromEntries(Object.entries(c.outputs).map(([k, v]) => [k, {data: Float32Array.from(v.data), shape: v.shape}]));\n"
              "    out[name] = decode(c.head, o, c.ctx);\n"
              "  }\n"
              "  process.stdout.write(JSON.stringify(out));\n"
              "});\n")
    ran = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(cases), text=True,
                         capture_output=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    js = json.loads(ran.stdout)
    for name in CASES:
        py = _decode(name)[0]
        got = js[name]
        assert len(got) == len(py.scores) > 0, name
        order = np.argsort(-py.scores, kind="stable")
        assert [d["label"] for d in got] == py.labels[order].tolist(), name
        np.testing.assert_allclose([d["box"] for d in got], py.boxes[order], atol=1e-3, err_msg=name)
        np.testing.assert_allclose([d["score"] for d in got], py.scores[order], atol=1e-5, err_msg=name)


def test_every_head_type_has_a_javascript_decoder():
    text = JS_HEADS.read_text()
    declared = text[text.index("export const DECODERS"):].split("\n")[0]
    for name, head_type in heads().items():
        if head_type.detects:
            assert name in declared, f"heads.mjs has no decoder for '{name}'"


def test_head_round_trips_through_the_manifest():
    spec = Spec("yolo", {"output": "y", "layout": "v8", "channels_first": True})
    assert Head.from_dict(spec.head.to_dict()) == spec.head
    assert isinstance(spec.inputs[0], InputSpec)
    assert scene().boxes.shape == (3, 4)


@pytest.mark.parametrize("family", ["ssdlite", "fcos"])
def test_anchors_head_matches_torchvisions_own_postprocessing(tmp_path, family):
    """The recipe's outputs decoded by the `anchors` head give the detections torchvision's
    model gives itself (its transform, decode, per-class NMS), for the confident ones."""
    torch = pytest.importorskip("torch")
    from deployer.frontends.recipes.torchvision import build as recipe_build
    from deployer.options import read_options
    from deployer.spec import Reader
    from tests.families import torchvision_models

    size = 320 if family == "ssdlite" else 160
    model = getattr(torchvision_models, family)().eval()
    model.transform.min_size, model.transform.max_size = (size,), size
    mean, std = list(model.transform.image_mean), list(model.transform.image_std)
    spec = Spec("anchors", {})
    spec.inputs = [InputSpec("images", [1, 3, size, size], "NCHW")]
    spec.preprocess = type("P", (), {"scale": 255.0, "mean": mean, "std": std})()
    spec.labels = ["a", "b", "c", "d"]
    spec.outputs = ["d", "l", "c"][:3 if family == "fcos" else 2]
    part, fields, anchors = recipe_build(model, spec)
    np.save(tmp_path / "anchors.npy", anchors)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        theirs = model([x[0]])[0]
        outs = part((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    given = {"deltas": "d", "logits": "l", "anchors": str(tmp_path / "anchors.npy")}
    params = {**read_options(Reader(tmp_path / "s.toml", given, "head."), heads()["anchors"].fields, None, "anchors",
                             noun="field"), **fields}
    spec.head = Head("anchors", score_threshold=0.3, iou_threshold=model.nms_thresh, max_detections=200,
                     params=params)
    arrays = {name: o.numpy()[None] for name, o in zip(spec.outputs, outs)}
    ours = heads()["anchors"].decode(arrays, spec, 0.3)[0]
    # The 50 best: both keep a candidate budget (theirs 400 per class, ours 30 x max_detections)
    # that only the long tail can feel.
    # Column 0 is the background: SSD never predicts it, RetinaNet and FCOS never learn it
    # (an untrained one may score it): the head drops it, so their class-0 detections go too.
    theirs = {k: v.numpy()[theirs["labels"].numpy() > 0] for k, v in theirs.items()}
    top = min(50, int((theirs["scores"] >= 0.3).sum()))
    assert top >= 10, theirs["scores"][:20]
    order = np.argsort(-ours.scores, kind="stable")[:top]
    np.testing.assert_allclose(ours.scores[order], theirs["scores"][:top], atol=1e-5)
    assert ours.labels[order].tolist() == (theirs["labels"][:top] - 1).tolist()
    np.testing.assert_allclose(ours.boxes[order], theirs["boxes"][:top], atol=1e-3)
