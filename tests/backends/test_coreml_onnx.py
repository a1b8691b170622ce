"""CoreML from an ONNX source: coremltools 9 reads no ONNX, so deployer rebuilds the graph as a
PyTorch module with onnx2torch and converts that; the artifact is verified by the interpreter
like the rest, and the manifest says how it was made. An op onnx2torch lacks fails the CoreML
conversion only, naming the op."""

from __future__ import annotations

import json

import pytest

from deployer.errors import StageError
from tests.conftest import ROOT, detector_spec, run_cli

pytestmark = pytest.mark.heavy


def _onnx_spec(folder, onnx_path):
    return detector_spec(folder, "rnet_onnx", source=f'kind = "onnx"\npath = "{onnx_path}"', shape=[1, 3, 24, 24],
                         outputs=["boxes", "scores"], head='type = "raw"', calibration_images=4, evaluation_images=4)


@pytest.fixture(scope="module")
def onnx_build(tmp_path_factory):
    """The MTCNN-style face detector exported to ONNX (PReLU after the dense layer included),
    built for the bundled ios target."""
    import torch

    from tests.backends.torch_detectors import mtcnn_rnet

    folder = tmp_path_factory.mktemp("coreml_onnx")
    onnx_path = folder / "rnet.onnx"
    torch.onnx.export(mtcnn_rnet(), (torch.zeros(1, 3, 24, 24),), str(onnx_path), input_names=["images"],
                      output_names=["boxes", "scores"], opset_version=17, dynamo=False)
    dist = folder / "dist"
    result = run_cli("build", str(_onnx_spec(folder, onnx_path)), "--target", str(ROOT / "targets/ios.toml"),
                     "--out", str(dist))
    return result, json.loads((dist / "rnet_onnx" / "manifest.json").read_text())


def test_onnx_source_reaches_coreml_and_passes(onnx_build):
    result, manifest = onnx_build
    assert result.returncode == 0, result.stdout + result.stderr
    entries = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(entries) == {"fp16", "int8"}
    for entry in entries.values():
        assert entry["status"] == "built" and entry["format"] == "mlpackage"
        parity = entry["parity"]
        assert parity["verdict"] == "pass", parity
        assert parity["settings"]["engine"].startswith("deployer MIL interpreter")
        notes = " ".join(entry["notes"])
        assert "rebuilt from the ONNX graph by onnx2torch" in notes
        # the PReLU after the dense layer went through the repair, on the rebuilt module too
        assert "per-channel PReLU on a rank-2 tensor" in notes
    assert min(o["cosine"] for o in entries["fp16"]["parity"]["outputs"].values()) >= 0.999


def test_an_op_onnx2torch_lacks_fails_coreml_naming_it(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from deployer.backends.coreml import _onnx_as_torch

    graph = helper.make_graph([helper.make_node("Mish", ["images"], ["act"], name="head/mish")], "mish",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("act", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "mish.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(StageError, match=r"onnx2torch .* cannot rebuild ONNX op 'Mish' \(node 'head/mish', opset 18\)"):
        _onnx_as_torch(str(path))
