"""The framework bridge end to end: a PyTorch detector to a TensorFlow SavedModel and back
through its own spec to ONNX, and a Keras detector to a PyTorch ExportedProgram and
TorchScript and through the .pt2's spec to ONNX; every step verified in its runtime, and the
last model of each chain compared with the first source on the first source's inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli, write_spec

pytestmark = pytest.mark.heavy

KERAS = """
import sys
sys.path.insert(0, {root!r})
import keras
from examples.shapes.keras_model import build_keras
keras.utils.set_random_seed(0)
build_keras(num_classes=4, image_size=64, width=4).save({path!r})
"""


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "manifest.json").read_text())


def _passed(model_dir: Path, target: str) -> list[dict]:
    entries = [a for a in _manifest(model_dir)["artifacts"] if a["target"] == target]
    assert entries and all(a["status"] == "built" and a["parity"]["verdict"] == "pass" for a in entries), entries
    return entries


def _against_first_source(first: Path, onnx_file: Path, nhwc: bool) -> dict[str, float]:
    """`nhwc`: the last model takes channels-last inputs where the first took channels-first."""
    # Cosine per output of the last ONNX model against the first source's reference outputs,
    # on the first build's own evaluation inputs.
    import onnxruntime as ort

    inputs = np.load(first / ".work" / "eval_inputs.npz")["images"]          # (n, 1, ...) as the first spec
    reference = dict(np.load(next((first / ".work" / "cache" / "reference").glob("*/outputs.npz"))))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = {o.name: [] for o in session.get_outputs()}
    for x in inputs:
        x = x.transpose(0, 2, 3, 1) if nhwc else x
        for o, value in zip(session.get_outputs(), session.run(None, {name: x})):
            got[o.name].append(value)
    cosines = {}
    for key, ref in reference.items():
        out = np.stack(got[key]).ravel().astype(np.float64)
        ref = ref.ravel().astype(np.float64)
        cosines[key] = float(out @ ref / (np.linalg.norm(out) * np.linalg.norm(ref)))
    return cosines


def test_torch_to_tensorflow_and_back_to_onnx(tiny_project, tmp_path):
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = write_spec(tmp_path, source=src, data=tiny_project / "data")
    converted = run_cli("convert", str(spec), "--to", "tf", "--out", str(tmp_path / "a"))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    first = tmp_path / "a" / "tiny"
    entry = _passed(first, "tf")[0]
    assert entry["parity"]["runtime"] == "tensorflow"
    tf_spec = first / "tf" / "tiny_fp32.toml"
    assert f"spec of the converted model: {tf_spec}" in converted.stdout
    text = tf_spec.read_text()
    assert 'kind = "tensorflow"' in text and 'layout = "NHWC"' in text and "shape = [1, 64, 64, 3]" in text
    again = run_cli("build", str(tf_spec), "--target", "onnx", "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stdout + again.stderr
    onnx_entry = _passed(tmp_path / "b" / "tiny_tf", "onnx")[0]
    cosines = _against_first_source(first, tmp_path / "b" / "tiny_tf" / onnx_entry["path"], nhwc=True)
    assert set(cosines) == {"boxes", "scores"} and min(cosines.values()) >= 0.9999, cosines


def test_keras_to_torch_pt2_and_torchscript_and_on_to_onnx(tiny_project, tmp_path):
    keras_file = tmp_path / "tiny.keras"
    subprocess.run([sys.executable, "-c", KERAS.format(root=str(ROOT), path=str(keras_file))], check=True,
                   capture_output=True)
    src = f'kind = "tensorflow"\npath = "{keras_file}"\nimports = ["examples.shapes.keras_model"]\npython_path = ["{ROOT}"]'
    spec = write_spec(tmp_path, source=src, data=tiny_project / "data")
    spec.write_text(spec.read_text().replace("shape = [1, 3, 64, 64]", "shape = [1, 64, 64, 3]")
                    .replace('layout = "NCHW"', 'layout = "NHWC"'))
    converted = run_cli("convert", str(spec), "--to", "torch", "--out", str(tmp_path / "a"))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    first = tmp_path / "a" / "tiny"
    entries = {a["variant"]: a for a in _passed(first, "torch")}
    assert set(entries) == {"pt2", "torchscript"}
    assert entries["pt2"]["path"].endswith(".pt2") and entries["torchscript"]["path"].endswith(".torchscript")
    pt2_spec = first / "torch" / "tiny_fp32_pt2.toml"
    assert 'kind = "torch"' in pt2_spec.read_text()
    again = run_cli("build", str(pt2_spec), "--target", "onnx", "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stdout + again.stderr
    onnx_entry = _passed(tmp_path / "b" / "tiny_torch", "onnx")[0]
    cosines = _against_first_source(first, tmp_path / "b" / "tiny_torch" / onnx_entry["path"], nhwc=False)
    assert min(cosines.values()) >= 0.9999, cosines
