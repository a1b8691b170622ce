"""TFLite INT8 through AI Edge Quantizer (deployer/quantize/aeq.py): the head's decoding found
in a TFLite graph by the same walk as in ONNX, kept in float, and the body quantized."""

from __future__ import annotations

import numpy as np
import pytest

from deployer.quantize import aeq


@pytest.fixture(scope="module")
def float_tflite(tmp_path_factory):
    """A two-branch detector's float TFLite: conv layers, then a decoding that multiplies box
    logits (exp) by a stride and concatenates them with sigmoid scores (pixels next to 0..1)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)), tf.float32)
    wb = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 4)), tf.float32)
    wc = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 2)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="images")])
    def serve(x):
        f = tf.nn.relu(tf.nn.conv2d(x, w1, 2, "SAME"))
        boxes = tf.reshape(tf.exp(tf.nn.conv2d(f, wb, 1, "SAME")) * 8.0, [1, 64, 4])
        scores = tf.reshape(tf.sigmoid(tf.nn.conv2d(f, wc, 1, "SAME")), [1, 64, 2])
        return {"output0": tf.concat([boxes, scores], axis=2)}

    module = tf.Module()
    module.serve = serve
    folder = str(tmp_path_factory.mktemp("aeq") / "saved_model")
    tf.saved_model.save(module, folder, signatures={"serving_default": serve.get_concrete_function()})
    return tf.lite.TFLiteConverter.from_saved_model(folder).convert()   # with its signature, as deployer's


def test_the_decoding_is_found_after_the_last_convolutions(float_tflite):
    found = [op.op_type for op in aeq.decode_ops(float_tflite)]
    assert "CONCATENATION" in found and "LOGISTIC" in found and "EXP" in found
    assert "CONV_2D" not in found


def test_quantize_keeps_the_head_float_and_the_body_int8(float_tflite):
    samples = np.random.default_rng(1).uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)
    model, info = aeq.quantize(float_tflite, samples, io="float", quantize_head=False)
    convs = sum(op.op_type == "CONV_2D" for op in aeq.graph(model)[0])
    assert convs == 3 and info["float_ops"].get("CONV_2D", 0) == 0     # the body computes in int8
    assert info["float_ops"].get("CONCATENATION") == 1 and any("CONCATENATION" in o for o in info["head_float"])
    naive, info = aeq.quantize(float_tflite, samples, io="float", quantize_head=True)
    assert info["head_float"] == [] and "CONCATENATION" not in info["float_ops"]

    from ai_edge_litert.interpreter import Interpreter

    def run(data):
        it = Interpreter(model_content=data)
        runner = it.get_signature_runner()
        return np.concatenate([runner(images=samples[k:k + 1])["output0"] for k in range(len(samples))])

    reference, kept, forced = run(float_tflite), run(model), run(naive)
    # One int8 scale over pixels and probabilities wipes the scores out; a float head keeps them.
    kept_error = np.abs(kept[..., 4:] - reference[..., 4:]).max()
    assert kept_error < 0.1, kept_error
    forced_error = np.abs(forced[..., 4:] - reference[..., 4:]).max()
    assert forced_error > 2 * kept_error, (forced_error, kept_error)
