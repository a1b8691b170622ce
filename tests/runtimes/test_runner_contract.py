"""The runner contract (runtimes/base.py): name matching, layout conversion, (de)quantization
and the shape checks every runtime gets from the base class. The runtime here is a numpy
function standing in for a converter's output: NHWC, int8 in and out, renamed tensors."""

from __future__ import annotations

import numpy as np
import pytest

from deployer.errors import OutputMismatch
from deployer.runtimes.base import Runner, Tensor, from_layout, match_names, to_layout
from deployer.spec import DataSpec, Head, InputSpec, ModelSpec, Preprocess, Source

SPEC = ModelSpec(name="m", source=Source(kind="onnx", path="m.onnx"), inputs=[InputSpec("images", [1, 3, 4, 6])],
                 outputs=["boxes", "fmap"], preprocess=Preprocess(), head=Head(), labels=[], data=DataSpec())
IN_SCALE, OUT_SCALE = 0.01, 0.05


class Int8NHWC(Runner):
    """Takes (1, 4, 6, 3) int8 under the name 'serving_images'; gives output_0 = sum over
    channels (1, 2) int8, output_1 = the NHWC input doubled, as int8."""

    runtime = "numpy-int8"

    def load(self):
        self.settings = {"engine": "numpy"}

    def io(self):
        return ([Tensor("serving_images", (1, 4, 6, 3), np.dtype(np.int8), IN_SCALE, 3)],
                [Tensor("output_1", (1, 4, 6, 3), np.dtype(np.int8), OUT_SCALE, -2),
                 Tensor("output_0", (1, 2), np.dtype(np.int8), OUT_SCALE, 0)])

    def infer_impl(self, feed):
        (x,) = feed.values()
        assert x.dtype == np.int8 and x.shape == (1, 4, 6, 3)
        real = (x.astype(np.float32) - 3) * IN_SCALE
        total = np.array([[real.sum(), real.mean()]], np.float32)
        return {"output_0": np.clip(np.round(total / OUT_SCALE), -128, 127).astype(np.int8),
                "output_1": np.clip(np.round(real * 2 / OUT_SCALE) - 2, -128, 127).astype(np.int8)}


def _x(seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (1, 3, 4, 6)).astype(np.float32)


def test_layout_quantization_and_names_handled_by_the_base():
    x = _x()
    with Int8NHWC("m.tflite", SPEC, {}, {"boxes": [1, 2], "fmap": [1, 3, 4, 6]}) as runner:
        out = runner.infer({"images": x})
    assert set(out) == {"boxes", "fmap"} and out["fmap"].dtype == np.float32
    # output_0 -> boxes and output_1 -> fmap by position; fmap back in NCHW, dequantized.
    np.testing.assert_allclose(out["fmap"], 2 * x, atol=OUT_SCALE + 2 * IN_SCALE)
    np.testing.assert_allclose(out["boxes"][0, 0], x.sum(), atol=OUT_SCALE / 2 + x.size * IN_SCALE / 2)


def test_infer_many_stacks_samples():
    xs = np.stack([_x(0), _x(1), _x(2)])
    with Int8NHWC("m.tflite", SPEC, {}, {"boxes": [1, 2], "fmap": [1, 3, 4, 6]}) as runner:
        many = runner.infer_many({"images": xs})
        one = runner.infer({"images": xs[1]})
    assert many["fmap"].shape == (3, 1, 3, 4, 6) and many["boxes"].shape == (3, 1, 2)
    np.testing.assert_array_equal(many["fmap"][1], one["fmap"])


def test_wrong_output_shape_is_a_mismatch():
    with Int8NHWC("m.tflite", SPEC, {}, {"boxes": [1, 4], "fmap": [1, 3, 4, 6]}) as runner:
        with pytest.raises(OutputMismatch, match="output 'boxes'.*gives shape \\(1, 2\\).*\\(1, 4\\)"):
            runner.infer({"images": _x()})


def test_wrong_input_shape_is_a_mismatch():
    with Int8NHWC("m.tflite", SPEC) as runner:
        with pytest.raises(OutputMismatch, match="input 'images'.*expects shape"):
            runner.infer({"images": np.zeros((1, 3, 5, 6), np.float32)})


class Missing(Int8NHWC):
    def infer_impl(self, feed):
        return {"output_0": super().infer_impl(feed)["output_0"], "other": np.zeros(1)}


def test_missing_output_is_a_mismatch():
    with Missing("m.tflite", SPEC) as runner:
        with pytest.raises(OutputMismatch, match="'output_1'.*was not produced"):
            runner.infer({"images": _x()})


def test_match_names():
    assert match_names(["boxes", "scores"], ["scores", "boxes"], "x") == {"boxes": "boxes", "scores": "scores"}
    # Converters that write ':' or '/' as '_' (and strip a leading '_').
    assert match_names(["a:0"], ["a_0"], "x") == {"a:0": "a_0"}
    assert match_names(["a/b"], ["_a_b"], "x") == {"a/b": "_a_b"}
    # Unknown names: by trailing number, which converters keep in the ONNX order.
    assert match_names(["boxes", "scores"], ["output_1", "output_0"], "x") == {"boxes": "output_0",
                                                                                "scores": "output_1"}
    assert match_names(["boxes", "scores"], ["Identity_1", "Identity"], "x") == {"boxes": "Identity",
                                                                                "scores": "Identity_1"}
    # TF.js keys some outputs by name and others by graph tensor: exact ones kept, the rest by
    # the node's number (before the output index).
    assert match_names(["b", "s", "c", "n"], ["Identity_2:0", "Identity_1:0", "b", "n"], "x") == {
        "b": "b", "n": "n", "s": "Identity_1:0", "c": "Identity_2:0"}
    with pytest.raises(OutputMismatch, match="has 1 tensors.*lists 2"):
        match_names(["boxes", "scores"], ["output_0"], "x")


def test_layout_conversion():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 3, 2, 4)
    nhwc = to_layout(x, (1, 2, 4, 3), "t")
    assert nhwc.shape == (1, 2, 4, 3) and nhwc[0, 1, 2, 0] == x[0, 0, 1, 2]
    assert to_layout(x, [1, 3, 2, 4], "t") is x
    back = from_layout(nhwc, (1, 3, 2, 4), "t")
    np.testing.assert_array_equal(back, x)
    assert from_layout(nhwc, None, "t") is nhwc
    with pytest.raises(OutputMismatch):
        to_layout(x, (1, 3, 4, 2), "t")
    with pytest.raises(OutputMismatch):
        from_layout(np.zeros((1, 5)), (1, 4), "t")
