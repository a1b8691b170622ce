"""Calibration coverage (deployer/quantize/lint.py): the layers where the evaluation images
drive a tensor beyond what the calibration images showed, whose int8 range would clip."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from deployer.quantize.lint import coverage


def test_coverage_names_the_layers_evaluation_drives_beyond_calibration(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(0, 1, (8, 1, 4)).astype(np.float32))
    np.savez(tmp_path / "same.npz", x=rng.uniform(0, 1, (8, 1, 4)).astype(np.float32))
    np.savez(tmp_path / "bright.npz", x=rng.uniform(0, 3, (8, 1, 4)).astype(np.float32))
    covered = coverage(str(tmp_path / "m.onnx"), str(tmp_path / "calib.npz"), str(tmp_path / "same.npz"), ["x"])
    assert covered["beyond_count"] == 0 and covered["calibration_images"] == 8
    beyond = coverage(str(tmp_path / "m.onnx"), str(tmp_path / "calib.npz"), str(tmp_path / "bright.npz"), ["x"])
    assert {r["node"] for r in beyond["beyond"]} == {"dense", "relu"}
    assert all(r["ratio"] > 2 for r in beyond["beyond"])
