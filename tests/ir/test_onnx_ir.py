"""ONNX checks: corrupt files are named, inspect reports interface, ops and support."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from deployer.errors import UserError
from deployer.ir.onnx_ir import load_checked, op_inventory
from tests.conftest import run_cli, write_spec


def _small_model(path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["r"]), helper.make_node("Sigmoid", ["r"], ["out"])],
                              "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def test_corrupt_onnx_is_a_user_error(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    _small_model(bad)
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupt.onnx: not a valid ONNX model"):
        load_checked(bad)


def test_inspect_corrupt_file_exits_2(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    result = run_cli("inspect", str(bad))
    assert result.returncode == 2
    assert "corrupt.onnx" in result.stderr and "Traceback" not in result.stderr


def test_inspect_reports_interface_ops_and_support(tmp_path):
    path = tmp_path / "m.onnx"
    _small_model(path)
    result = run_cli("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inputs"][0] == {"name": "images", "shape": [1, 3, 8, 8], "dtype": "float32"}
    assert info["ops"] == {"Relu": 1, "Sigmoid": 1}
    assert info["support"] == {"onnx": [], "openvino": [], "tflite": [], "tfjs": [], "tflm": []}


def test_op_inventory_counts(tmp_path):
    path = tmp_path / "m.onnx"
    _small_model(path)
    assert op_inventory(onnx.load(str(path))) == {"Relu": 1, "Sigmoid": 1}


def test_build_from_corrupt_onnx_source_exits_2(tiny_project, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model at all")
    # With data: the datasets are checked first (before any stage), then the model.
    spec = write_spec(tmp_path, source='kind = "onnx"\npath = "model.onnx"', data=tiny_project / "data")
    result = run_cli("build", str(spec), "--target", "web", "--out", str(tmp_path / "dist"))
    assert result.returncode == 2
    assert "model.onnx: not a valid ONNX model" in result.stderr
    assert not (tmp_path / "dist" / "tiny" / "web").exists()
