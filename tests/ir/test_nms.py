"""NMS in the graph (deployer/ir/nms.py): each head type's ONNX decoding plus NonMaxSuppression,
run in ONNX Runtime, gives the detections deployer's numpy decoder gives on the same arrays,
in the fixed-shape layout apps read (count, then zero rows)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from deployer.errors import UserError
from deployer.heads import registry as heads
from deployer.ir.nms import OUTPUTS, with_nms
from tests.heads.cases import CASES


def _passthrough(arrays: dict, opset: int = 17) -> onnx.ModelProto:
    """A model whose outputs are its inputs: the head's arrays go in as they are."""
    inputs = [helper.make_tensor_value_info(f"in_{k}", TensorProto.FLOAT, list(v.shape)) for k, v in arrays.items()]
    outputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in arrays.items()]
    nodes = [helper.make_node("Identity", [f"in_{k}"], [k], name=f"id_{k}") for k in arrays]
    return helper.make_model(helper.make_graph(nodes, "heads", inputs, outputs),
                             opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _run(model, arrays: dict) -> dict:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {f"in_{k}": v for k, v in arrays.items()})))


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "end2end"))
@pytest.mark.parametrize("opset", [11, 17])
def test_graph_nms_gives_the_numpy_decoders_detections(case, opset):
    spec, arrays, _ = CASES[case]()
    decoded, final, nodes = with_nms(_passthrough(arrays, opset), spec)
    onnx.checker.check_model(final, full_check=True)
    out = _run(final, arrays)
    assert list(out) == list(OUTPUTS)
    K = spec.head.max_detections
    assert [out[n].shape for n in OUTPUTS] == [(1, K, 4), (1, K), (1, K), (1,)]
    expected = heads()[spec.head.type].decode(arrays, spec, spec.head.score_threshold)[0]
    n = int(out["num_detections"][0])
    assert n == len(expected.scores) > 0
    np.testing.assert_allclose(out["detection_scores"][0, :n], expected.scores, atol=1e-5)
    np.testing.assert_allclose(out["detection_boxes"][0, :n], expected.boxes, atol=1e-3)
    assert out["detection_classes"][0, :n].astype(int).tolist() == expected.labels.tolist()
    # Past the count every row is zeros, as an app expects.
    assert not out["detection_boxes"][0, n:].any() and not out["detection_scores"][0, n:].any()
    # The decoded model gives the boxes and per-class scores a pipeline NMS stage takes.
    boxes, scores = _run(decoded, arrays).values()
    assert boxes.shape[-1] == 4 and scores.shape[-1] == len(spec.labels)
    assert all(name.startswith("deployer_nms/") for name in nodes)


def test_model_outputs_named_like_the_finished_ones_are_renamed():
    """A model whose own output is called 'boxes' (boxes_scores heads) keeps working: its
    tensor is renamed inside the graph, the decoded model's 'boxes' is the decoded one."""
    spec, arrays, _ = CASES["boxes_scores_cxcywh"]()
    decoded, _, _ = with_nms(_passthrough(arrays), spec)
    onnx.checker.check_model(decoded, full_check=True)
    boxes = _run(decoded, arrays)["boxes"][0]
    cxcywh = arrays["boxes"][0]
    np.testing.assert_allclose(boxes[:, :2], cxcywh[:, :2] - cxcywh[:, 2:] / 2, atol=1e-5)


def test_an_end2end_models_own_nms_is_replaced():
    """An end2end model (here: a yolo case with deployer's NMS, standing for tf2onnx's rendering
    of CombinedNonMaxSuppression) gets its own NMS replaced: the model's NMS inputs are taken
    as boxes and per-class scores, the rest of its post-processing is pruned."""
    from tests.heads.cases import Spec

    spec, arrays, _ = CASES["yolo_v8"]()
    _, end2end_model, _ = with_nms(_passthrough(arrays), spec)
    first = _run(end2end_model, arrays)
    e2e = Spec("end2end", {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
                           "count": "num_detections", "box_format": "xyxy", "normalized": False, "class_offset": 0})
    _, again, _ = with_nms(end2end_model, e2e)
    assert sum(n.op_type == "NonMaxSuppression" for n in again.graph.node) == 1      # the old one pruned
    out = _run(again, arrays)
    for name in OUTPUTS:
        np.testing.assert_allclose(out[name], first[name], atol=1e-5)


def test_an_end2end_model_without_nms_is_refused():
    spec, arrays, _ = CASES["end2end"]()
    with pytest.raises(UserError, match="head.nms.*replaces an end2end model's own NonMaxSuppression.*has 0"):
        with_nms(_passthrough(arrays), spec)


def test_heads_without_graph_decoding_are_refused():
    from tests.heads.cases import Spec

    spec, arrays, _ = CASES["boxes_scores"]()
    raw = Spec("raw", {})
    with pytest.raises(UserError, match="head.nms.*'raw' has no graph decoding"):
        with_nms(_passthrough(arrays), raw)


def test_old_opsets_are_refused_with_the_field_named():
    spec, arrays, _ = CASES["yolo_v8"]()
    with pytest.raises(UserError, match="source.opset.*opset 11 or later"):
        with_nms(_passthrough(arrays, opset=10), spec)
