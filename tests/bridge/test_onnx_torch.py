"""ONNX graphs written the way onnx2torch reads them (bridge/onnx_torch.py), without a build:
each opset-18 op rewritten to its opset-17 form computes the same in ONNX Runtime before and
after, and the module onnx2torch rebuilds from it computes the same again."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deployer.bridge.onnx_torch import older_forms, rebuild
from deployer.errors import StageError


def _model(nodes, inits=(), shape=(1, 8, 6, 6), outputs=("y",), opset=18):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _run(model, x):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


SPLIT = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3, name="chunk")]   # 8 -> 3, 3, 2
REDUCE = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1, name="mean")]
RESIZE = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", name="up")]
PAD = [helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant", name="pad")]


@pytest.mark.parametrize("nodes, inits, outputs", [
    (SPLIT, [], ("a", "b", "c")),
    (REDUCE, [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")], ("y",)),
    (RESIZE, [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")], ("y",)),
    (PAD, [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")], ("y",)),
    # a Split output that is also a graph output, and one used again after it
    (SPLIT + [helper.make_node("Add", ["a", "b"], ["s"], name="add")], [], ("s", "b")),
])
def test_opset_18_ops_are_written_in_their_equal_opset_17_form(tmp_path, nodes, inits, outputs):
    import torch

    model = _model(nodes, inits, outputs=outputs)
    x = np.random.default_rng(0).normal(size=(1, 8, 6, 6)).astype(np.float32)
    before = _run(model, x)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    notes = older_forms(rewritten)
    assert _opset(rewritten) == 17 and notes and "opset 18 written as 17" in notes[-1], notes
    onnx.shape_inference.infer_shapes(rewritten, strict_mode=True)   # every node valid at opset 17
    for a, b in zip(before, _run(rewritten, x)):
        np.testing.assert_array_equal(a, b)
    onnx.save(model, tmp_path / "m.onnx")   # rebuild() reads a file and applies older_forms itself
    module = rebuild(str(tmp_path / "m.onnx"), "test", "nothing to do").eval()
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    def flat(v):
        return [t for item in v for t in flat(item)] if isinstance(v, (list, tuple)) else [v]
    got = flat(got)
    assert len(got) == len(before)
    for a, b in zip(before, got):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)


def test_what_has_no_equal_older_form_stays_at_18_and_is_named():
    # Split into num_outputs along an axis of unknown size: its sizes cannot be written down.
    model = _model(SPLIT, shape=(1, "c", 6, 6), outputs=("a", "b", "c"))
    assert older_forms(model) == [] and _opset(model) == 18
    # Reduce with computed axes: no attribute can hold them.
    computed = _model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "i", "j"], ["axes"]),
                       *REDUCE], [numpy_helper.from_array(np.array([3], np.int64), "i"),
                                  numpy_helper.from_array(np.array([4], np.int64), "j")])
    assert older_forms(computed) == [] and _opset(computed) == 18


def test_an_op_onnx2torch_lacks_is_named_with_the_callers_advice(tmp_path):
    path = tmp_path / "mish.onnx"
    onnx.save(_model([helper.make_node("Mish", ["x"], ["y"], name="head/mish")]), str(path))
    with pytest.raises(StageError, match=r"^torch: rebuilt: onnx2torch .* cannot rebuild ONNX op 'Mish' "
                                         r"\(node 'head/mish', opset 18\) as PyTorch; try this"):
        rebuild(str(path), "torch: rebuilt:", "try this")


def test_a_converted_models_spec_carries_copies_of_the_files_its_head_reads(tmp_path):
    """A recipe's anchors live in the build's cache: the written spec names a copy beside it,
    so the folder can be moved and the cache cleared, and the spec still loads."""
    from deployer.bridge import spec_file
    from deployer.spec import load_model_spec

    src = tmp_path / "src"
    src.mkdir()
    anchors = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(src / "anchors.npy", anchors)
    (src / "m.onnx").write_bytes(b"")
    (src / "m.toml").write_text('name = "m"\nlabels = ["a", "b"]\n[source]\nkind = "onnx"\npath = "m.onnx"\n'
                                'opset = 16\n[[inputs]]\nname = "images"\nshape = [1, 3, 32, 32]\nlayout = "NCHW"\n'
                                '[outputs]\nnames = ["deltas", "logits"]\n[head]\ntype = "anchors"\n'
                                'deltas = "deltas"\nlogits = "logits"\nanchors = "anchors.npy"\n')
    spec = load_model_spec(src / "m.toml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.pt2").write_bytes(b"")
    written = spec_file.write(spec, "m_torch", {"kind": "torch", "path": "m.pt2"},
                              [{"name": "images", "shape": [1, 3, 32, 32], "layout": "NCHW"}], out, "m_fp32")
    assert written == ["m_fp32.toml", "m_fp32_anchors.npy"]
    moved = tmp_path / "moved"
    out.rename(moved)
    (src / "anchors.npy").unlink()
    again = load_model_spec(moved / "m_fp32.toml")
    assert again.name == "m_torch" and again.source.opset == 16 and again.labels == ["a", "b"]
    np.testing.assert_array_equal(np.load(again.head.params["anchors"]), anchors)
