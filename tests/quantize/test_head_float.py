"""The head's decoding found in the graph (deployer/quantize/head_float.py): what an INT8
quantizer keeps in float by default, on a YOLOv8-structured graph (DFL, anchors and strides,
boxes concatenated with scores) and on a graph whose outputs come straight from layers."""

from __future__ import annotations

import io

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deployer.ir.onnx_ir import name_nodes
from deployer.quantize.head_float import decode_nodes, head_exclusions
from tests.backends.torch_detectors import yolov8_tiny


@pytest.fixture(scope="module")
def yolov8_onnx():
    buffer = io.BytesIO()
    torch.onnx.export(yolov8_tiny().eval(), torch.zeros(1, 3, 64, 64), buffer, input_names=["images"],
                      output_names=["preds"], opset_version=17, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    name_nodes(model)
    return model


def test_yolov8_decoding_is_everything_after_the_last_convolutions(yolov8_onnx):
    graph = yolov8_onnx.graph
    found = set(decode_nodes(yolov8_onnx))
    ops = {n.name: n.op_type for n in graph.node}
    kinds = {ops[n] for n in found}
    # The DFL softmax and its fixed expectation conv, the sigmoid, the box arithmetic and the
    # concatenation of pixels with probabilities are all decoding.
    assert {"Softmax", "Sigmoid", "Concat", "Sub", "Add", "Mul"} <= kinds
    assert [ops[n] for n in found].count("Conv") == 1                     # the DFL conv only
    final = next(n for n in graph.node if graph.output[0].name in n.output)
    assert final.name in found and final.op_type == "Concat"
    # The branches' own last convolutions (learned) and everything before them are quantized.
    learned = [n for n in graph.node if n.op_type == "Conv" and n.name not in found]
    assert len(learned) > 10
    assert not any(ops[n] in ("Resize", "MaxPool") for n in found)


def test_outputs_straight_from_layers_leave_only_their_reshapes(tmp_path):
    """An SSD-like graph: Conv -> Reshape per output; the Conv stays quantized."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 4, 1, 1], [0.1] * 32)
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, -1, 4])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Reshape", ["c", "shape"], ["y"])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128, 4])
    model = helper.make_model(helper.make_graph(nodes, "ssd", [x], [y], [w, shape]),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert name_nodes(model) == 2                                          # unnamed nodes get names
    assert decode_nodes(model) == ["Reshape_1"]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert head_exclusions(str(path), {"exclude": ["Conv_0"]}) == (["Conv_0", "Reshape_1"], ["Reshape_1"])
    assert head_exclusions(str(path), {"exclude": [], "quantize_head": True}) == ([], [])


def test_int8_lint_names_the_concat_of_pixels_and_probabilities(yolov8_onnx, tmp_path):
    from deployer.quantize.lint import lint

    path = tmp_path / "yolo.onnx"
    onnx.save(yolov8_onnx, path)
    found = lint(str(path))
    final = next(n for n in yolov8_onnx.graph.node if yolov8_onnx.graph.output[0].name in n.output)
    concat = [f for f in found if f["node"] == final.name]
    assert len(concat) == 1 and "concatenates probabilities (0..1) with other values" in concat[0]["issue"]
    assert concat[0]["action"].startswith("kept in float: part of the head's decoding")
    assert all(f["node"] for f in found)


def test_int8_lint_checks_ranges_on_sample_inputs(tmp_path):
    """Two branches of very different ranges concatenated (no probabilities involved): found
    only with sample inputs, and named with the ratio."""
    import numpy as np

    from deployer.quantize.lint import lint

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    big = helper.make_tensor("big", TensorProto.FLOAT, [1], [1000.0])
    nodes = [helper.make_node("Mul", ["x", "big"], ["a"], name="scale"),
             helper.make_node("Relu", ["x"], ["b"], name="relu"),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1, name="mixed"),
             helper.make_node("Relu", ["c"], ["y"], name="after")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    model = helper.make_model(helper.make_graph(nodes, "mixed", [x], [y], [big]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert lint(str(path)) == []
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(0).uniform(0.1, 1.0, (4, 1, 4)).astype(np.float32))
    found = lint(str(path), str(tmp_path / "in.npz"))
    assert [f["node"] for f in found] == ["mixed"] and "differ 1000x" in found[0]["issue"]
