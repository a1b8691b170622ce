"""Splitting a graph at its head's decoding (deployer/ir/split.py): the body and the decoding,
run one after the other in ONNX Runtime, give the whole graph's outputs; their interface is
named pre_decode_<i>; a graph without decoding is not split."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from deployer.ir.onnx_ir import name_nodes
from deployer.ir.split import split
from tests.backends.torch_detectors import yolov8_tiny


def _run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.fixture(scope="module")
def yolov8_file(tmp_path_factory):
    buffer = io.BytesIO()
    torch.onnx.export(yolov8_tiny().eval(), torch.zeros(1, 3, 64, 64), buffer, input_names=["images"],
                      output_names=["preds"], opset_version=17, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    name_nodes(model)
    path = tmp_path_factory.mktemp("split") / "yolov8.onnx"
    onnx.save(model, path)
    return path


def test_body_then_decoding_is_the_whole_graph(yolov8_file, tmp_path):
    parts = split(str(yolov8_file), tmp_path)
    # One box branch (DFL) and one class branch per level.
    names = [p["name"] for p in parts["pre_decode"]]
    assert names == [f"pre_decode_{i}" for i in range(len(names))] and len(names) >= 4 and len(names) % 2 == 0
    assert all(p["tensor"].endswith("Conv_output_0") for p in parts["pre_decode"])
    assert parts["decode_nodes"] > 10
    body, decode = onnx.load(tmp_path / "body.onnx"), onnx.load(tmp_path / "decode.onnx")
    assert {n.op_type for n in decode.graph.node} >= {"Softmax", "Sigmoid", "Concat"}
    assert "Softmax" not in {n.op_type for n in body.graph.node}
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    whole = _run(yolov8_file, {"images": x})
    pre = _run(tmp_path / "body.onnx", {"images": x})
    assert set(pre) == {p["name"] for p in parts["pre_decode"]}
    after = _run(tmp_path / "decode.onnx", pre)
    np.testing.assert_allclose(after["preds"], whole["preds"], rtol=1e-5, atol=1e-4)


def test_an_output_made_by_the_body_passes_through(tmp_path):
    """Two outputs: one decoded (Sigmoid after the conv), one straight from a layer."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [0.5, -0.2, 0.3, 0.8])
    nodes = [helper.make_node("Conv", ["x", "w"], ["raw"], name="conv"),
             helper.make_node("Sigmoid", ["raw"], ["scores"], name="sig")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in ("scores", "raw")]
    model = helper.make_model(helper.make_graph(nodes, "two", [x], outs, [w]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    path = tmp_path / "two.onnx"
    onnx.save(model, path)
    parts = split(str(path), tmp_path / "parts")
    assert [p["tensor"] for p in parts["pre_decode"]] == ["raw"]
    feed = {"x": np.random.default_rng(1).normal(size=(1, 2, 4, 4)).astype(np.float32)}
    after = _run(tmp_path / "parts" / "decode.onnx", _run(tmp_path / "parts" / "body.onnx", feed))
    whole = _run(path, feed)
    assert set(after) == {"scores", "raw"}
    for name in after:
        np.testing.assert_allclose(after[name], whole[name], rtol=1e-6)


def test_a_graph_without_decoding_is_not_split(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0, 0.0, 0.0, 1.0])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g", [x],
                                                [y], [w]), opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, tmp_path / "m.onnx")
    assert split(str(tmp_path / "m.onnx"), tmp_path / "parts") is None
    assert not (tmp_path / "parts").exists()
