"""The TensorFlow frontend lowers Keras files and SavedModels (NHWC) to ONNX with tf2onnx."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from deployer.spec import load_model_spec
from deployer.stages import RUN_INPUTS
from deployer.worker import run_stage
from tests.conftest import ROOT, write_spec

pytestmark = pytest.mark.heavy

SAVE = """
import sys
sys.path.insert(0, {root!r})
import keras
from examples.shapes.keras_model import build_keras
keras.utils.set_random_seed(0)
model = build_keras(num_classes=4, image_size=64, width=4)
model.save({keras_path!r})
model.export({saved_path!r}, verbose=False)
"""


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras")
    code = SAVE.format(root=str(ROOT), keras_path=str(folder / "tiny.keras"), saved_path=str(folder / "saved"))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return folder


def _spec(folder, path):
    src = f'kind = "tensorflow"\npath = "{path}"\nimports = ["examples.shapes.keras_model"]\npython_path = ["{ROOT}"]'
    spec_path = write_spec(folder, source=src)
    spec_path.write_text(spec_path.read_text().replace("shape = [1, 3, 64, 64]", "shape = [1, 64, 64, 3]")
                         .replace('layout = "NCHW"', 'layout = "NHWC"'))
    return load_model_spec(spec_path)


@pytest.mark.parametrize("source", ["tiny.keras", "saved"])
def test_lowered_model_matches_tensorflow(keras_files, tmp_path, source):
    spec = _spec(keras_files, keras_files / source)
    out = tmp_path / "m.onnx"
    info = run_stage("deployer.frontends.tensorflow:lower", {"spec": spec.to_dict(), "out_path": str(out),
                     "source_sha256": "0" * 64, "toolchain": {}}, workdir=tmp_path, name="lower").value
    assert info["exporter"].startswith("tf2onnx") and "opset 17" in info["exporter"]
    assert [i["name"] for i in info["inputs"]] == ["images"] and info["inputs"][0]["shape"] == [1, 64, 64, 3]
    assert [o["name"] for o in info["outputs"]] == ["boxes", "scores"]
    x = np.random.default_rng(0).random((2, 1, 64, 64, 3), dtype=np.float32)
    np.savez(tmp_path / "in.npz", images=x)
    for runtime, artifact in (("tensorflow", ""), ("onnxruntime", str(out))):
        run_stage(RUN_INPUTS, {"runtime": runtime, "artifact": artifact, "spec": spec.to_dict(),
                  "inputs": str(tmp_path / "in.npz"), "outputs": str(tmp_path / f"{runtime}.npz"), "settings": {}},
                  workdir=tmp_path, name=runtime)
    ref, got = np.load(tmp_path / "tensorflow.npz"), np.load(tmp_path / "onnxruntime.npz")
    for name in ("boxes", "scores"):
        assert got[name].shape == ref[name].shape == ((2, 1, 84, 4))
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4)


def test_missing_custom_layer_module_is_named(keras_files, tmp_path):
    spec = _spec(keras_files, keras_files / "tiny.keras")
    spec.source.imports = ["no_such_layers"]
    from deployer.errors import UserError

    with pytest.raises(UserError, match="source.imports.*no_such_layers"):
        run_stage("deployer.frontends.tensorflow:lower", {"spec": spec.to_dict(), "out_path": str(tmp_path / "m.onnx"),
                  "source_sha256": "0" * 64, "toolchain": {}}, workdir=tmp_path, name="lower")


def test_saved_model_output_names_are_checked_before_tracing(keras_files, tmp_path):
    """A spec naming outputs the SavedModel does not have: the message names the field and the
    model's outputs, without TensorFlow's "in user code:" trace around it."""
    spec = _spec(keras_files, keras_files / "saved")
    spec.outputs = ["detections", "classes"]
    with pytest.raises(Exception) as err:
        run_stage("deployer.frontends.tensorflow:lower", {"spec": spec.to_dict(), "out_path": str(tmp_path / "m.onnx"),
                  "source_sha256": "0" * 64, "toolchain": {}}, workdir=tmp_path, name="lower")
    text = str(err.value)
    assert "field 'outputs.names': the model's outputs are" in text and "not ['detections', 'classes']" in text
    assert "in user code" not in text
