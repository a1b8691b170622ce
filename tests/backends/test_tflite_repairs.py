"""The TFLite backend's rewrite of one-axis Tile into Concat (onnx2tf mis-converts 5-D Tile):
the same computation, and the nodes rewritten are returned for the artifact's notes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deployer.backends.tflite import _tile_as_concat


def test_one_axis_tile_becomes_an_equivalent_concat(tmp_path):
    reps = numpy_helper.from_array(np.array([1, 1, 2, 1, 1], np.int64), "reps")
    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "reps"], ["y"], name="up_tile"),
         helper.make_node("Tile", ["y", "reps2"], ["z"], name="two_axes")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=[reps, numpy_helper.from_array(np.array([1, 2, 1, 2, 1], np.int64), "reps2")])
    src = tmp_path / "tile.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(src))
    rewritten = _tile_as_concat(str(src), tmp_path / "out.onnx")
    assert rewritten == ["up_tile"]          # a Tile repeating two axes is left alone
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 2, 3, 4, 5), dtype=np.float32)
    before = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
    after = ort.InferenceSession(str(tmp_path / "out.onnx")).run(None, {"x": x})[0]
    assert [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node] == ["Concat", "Tile"]
    np.testing.assert_array_equal(before, after)
