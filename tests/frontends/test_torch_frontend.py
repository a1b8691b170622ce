"""The PyTorch frontend lowers factories, TorchScript and ExportedPrograms to checked ONNX."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from deployer.errors import UserError
from deployer.runtimes.run import make_runner
from deployer.spec import load_model_spec
from deployer.worker import run_stage
from tests.conftest import ROOT, write_spec

pytestmark = pytest.mark.heavy


def _lower(spec_path, tmp_path):
    spec = load_model_spec(spec_path)
    out = tmp_path / "out.onnx"
    info = run_stage("deployer.frontends.torch:lower", {"spec": spec.to_dict(), "out_path": str(out),
                     "source_sha256": "ab" * 32, "toolchain": {"torch": torch.__version__}},
                     workdir=tmp_path, name="lower").value
    return spec, out, info


def _tiny():
    import sys

    sys.path.insert(0, str(ROOT))
    from examples.shapes.model import ShapesDet

    torch.manual_seed(0)
    return ShapesDet(num_classes=4, image_size=64, width=4).eval()


def _check_against_torch(spec, onnx_path, model):
    x = np.random.default_rng(3).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        boxes, scores = model(torch.from_numpy(x))
    with make_runner("onnxruntime", str(onnx_path), spec, {}) as runner:
        out = runner.infer({"images": x})
    np.testing.assert_allclose(out["boxes"], boxes.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["scores"], scores.numpy(), rtol=1e-4, atol=1e-5)


def test_factory_with_weights(tiny_project, tmp_path):
    model = _tiny()
    with torch.no_grad():  # weights that differ from the factory's own init
        for p in model.parameters():
            p.add_(0.01)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    src = (f'kind = "torch"\nfactory = "tinydet:build"\nweights = "w.pt"\n'
           f'python_path = ["{ROOT}", "{tiny_project}"]')
    spec, out, info = _lower(write_spec(tmp_path, source=src), tmp_path)
    assert info["source_form"] == "factory" and info["exporter"] in ("dynamo", "torchscript")
    assert [o["name"] for o in info["outputs"]] == ["boxes", "scores"]
    onnx.checker.check_model(str(out))
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["deployer.source_sha256"] == "ab" * 32 and meta["deployer.exporter"] == info["exporter"]
    assert json.loads(meta["deployer.toolchain"])["torch"] == torch.__version__
    _check_against_torch(spec, out, model)


def test_torchscript(tmp_path):
    model = _tiny()
    torch.jit.trace(model, torch.zeros(1, 3, 64, 64)).save(str(tmp_path / "m.torchscript"))
    spec, out, info = _lower(write_spec(tmp_path, source='kind = "torch"\npath = "m.torchscript"'), tmp_path)
    assert info["source_form"] == "torchscript" and info["exporter"] == "torchscript"
    _check_against_torch(spec, out, model)


def test_exported_program(tmp_path):
    model = _tiny()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(tmp_path / "m.pt2"))
    spec, out, info = _lower(write_spec(tmp_path, source='kind = "torch"\npath = "m.pt2"'), tmp_path)
    assert info["source_form"] == "exported_program" and info["exporter"] == "dynamo"
    _check_against_torch(spec, out, model)


def test_weights_that_do_not_fit_are_named(tiny_project, tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    src = f'kind = "torch"\nfactory = "tinydet:build"\nweights = "bad.pt"\npython_path = ["{ROOT}", "{tiny_project}"]'
    with pytest.raises(UserError, match="bad.pt: weights do not fit"):
        _lower(write_spec(tmp_path, source=src), tmp_path)


def test_pickled_module_is_refused(tmp_path):
    torch.save(_tiny(), tmp_path / "whole.pt")
    with pytest.raises(UserError, match="not a TorchScript archive"):
        _lower(write_spec(tmp_path, source='kind = "torch"\npath = "whole.pt"'), tmp_path)


def test_missing_factory_module(tmp_path):
    with pytest.raises(UserError, match="cannot import 'nosuchmodule'"):
        _lower(write_spec(tmp_path, source='kind = "torch"\nfactory = "nosuchmodule:build"'), tmp_path)
