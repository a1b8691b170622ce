"""The MIL interpreter runs what detector families produce: small models in the shapes of
YOLOv8, torchvision's RetinaNet head and SSDlite's MobileNetV3, resampling layers, and a
Keras model with pooling, batch norm and resizing, converted by deployer's CoreML backend and
checked against the source framework within float16 tolerances. The MTCNN-style face
detector (a PReLU after a fully connected layer) converts as a PyTorch factory, through the
PReLU repair, and as a TensorFlow SavedModel, which coremltools converts only while the
loaded object is kept alive.

One process per framework converts and runs every model (tests/backends/coreml_check.py):
whole builds of these sources through the pipeline are in test_coreml_onnx.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.heavy

TORCH_MODELS = {   # factory in tests.backends.torch_detectors: (input shape, outputs, ops it must produce)
    "yolov8_tiny": ([1, 3, 64, 64], ["preds"], {"max_pool", "split", "softmax", "upsample_nearest_neighbor", "silu"}),
    "retinanet_head": ([1, 3, 64, 64], ["deltas", "logits"], {"max_pool", "conv", "relu"}),
    "mobilenet_v3_blocks": ([1, 3, 64, 64], ["features", "pooled"], {"sigmoid_hard", "thresholded_relu",
                                                                     "reduce_mean"}),
    "resampling": ([1, 3, 10, 12], ["up", "sized", "pooled", "normed"],
                   {"upsample_bilinear", "avg_pool", "pad", "layer_norm", "instance_norm", "gelu", "elu",
                    "leaky_relu", "conv_transpose"}),
    "mtcnn_rnet": ([1, 3, 24, 24], ["boxes", "scores"], {"max_pool", "linear", "prelu", "softmax"}),
}
KERAS_OPS = {"max_pool", "avg_pool", "upsample_bilinear", "resize_bilinear", "resize_nearest_neighbor", "tile"}


def _spec(folder, name, source, shape, outputs, layout="NCHW"):
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(f'''\
        name = "{name}"
        labels = ["a", "b", "c"]
        [source]
        {source}
        [[inputs]]
        name = "images"
        shape = {shape}
        layout = "{layout}"
        [outputs]
        names = {json.dumps(outputs)}
        [head]
        type = "raw"
        '''))
    return path


def _check(folder, specs, prepare=""):
    """tests/backends/coreml_check.py in a process of its own, after `prepare` (Python code)."""
    results = folder / "results.json"
    code = f"{prepare}\nfrom tests.backends.coreml_check import main\nmain(*{[str(results), *map(str, specs)]!r})"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(results.read_text())


@pytest.fixture(scope="module")
def torch_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch_families")
    specs = [_spec(folder, name, f'kind = "torch"\nfactory = "tests.backends.torch_detectors:{name}"\n'
                                 f'python_path = ["{ROOT}"]', shape, outputs)
             for name, (shape, outputs, _) in TORCH_MODELS.items()]
    return _check(folder, specs)


@pytest.fixture(scope="module")
def keras_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_family")
    models = {"pooling_resizing": ([1, 32, 32, 3], ["resized", "features"]),
              "mtcnn_rnet": ([1, 24, 24, 3], ["boxes", "scores"])}
    specs = [_spec(folder, name, f'kind = "tensorflow"\npath = "{folder / name}"', shape, outputs, layout="NHWC")
             for name, (shape, outputs) in models.items()]
    # One TensorFlow process saves the SavedModels, converts them and runs them.
    prepare = "import tests.backends.keras_detectors as kd\n" + "\n".join(
        f"kd.save(kd.{name}(), {str(folder / name)!r}, {outputs!r})" for name, (_, outputs) in models.items())
    return _check(folder, specs, prepare)


def _assert_matches(result, expected_ops):
    assert result["missing"] == [], f"ops the interpreter lacks: {result['missing']}"
    assert expected_ops <= set(result["ops"]), sorted(expected_ops - set(result["ops"]))
    for name, out in result["outputs"].items():
        assert out["shape"] == out["want_shape"], name
        # float16 compute: about 3 significant digits per op, a few ops deep
        assert out["cosine"] > 0.9999, (name, out)
        assert out["max_abs"] <= 1e-2 * max(out["magnitude"], 1.0), (name, out)
        assert out["float16_values"], f"{name}: the program stores float16, the interpreter must round to it"


@pytest.mark.parametrize("model", list(TORCH_MODELS))
def test_torch_family_runs_in_the_interpreter(torch_results, model):
    _assert_matches(torch_results[model], TORCH_MODELS[model][2])


def test_keras_pooling_and_resizing_run_in_the_interpreter(keras_results):
    _assert_matches(keras_results["pooling_resizing"], KERAS_OPS)


def test_mtcnn_torch_prelu_after_dense_is_repaired(torch_results):
    """coremltools refuses the per-channel PReLU on the dense layer's rank-2 output: the
    conversion rewrites that one as max(x, 0) + alpha * min(x, 0) and records it; the PReLUs
    on feature maps (rank 4) stay prelu ops."""
    result = torch_results["mtcnn_rnet"]
    assert [(r["kind"], r["rank"]) for r in result["repairs"]] == [("prelu", 2)]
    assert "prelu" in result["repairs"][0]["layer"] and "max(x, 0) + alpha * min(x, 0)" in result["repairs"][0]["note"]
    for out in result["outputs"].values():
        assert out["cosine"] > 0.999 and out["max_abs"] < 1e-2   # the ios profile's fp16 threshold


def test_mtcnn_saved_model_converts_while_kept_alive(keras_results):
    """A TensorFlow SavedModel (Keras PReLUs lower to relu arithmetic in the graph: no repair)."""
    result = keras_results["mtcnn_rnet"]
    assert result["repairs"] == [] and result["missing"] == []
    for out in result["outputs"].values():
        assert out["cosine"] > 0.999 and out["max_abs"] < 1e-2
