"""Every runner runs a real artifact of the tiny detector and matches the torch reference."""

from __future__ import annotations

import numpy as np
import pytest

from deployer import backends
from deployer.runtimes.run import make_runner
from deployer.spec import load_model_spec
from deployer.worker import run_stage

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def artifacts(tiny_project, tmp_path_factory):
    from tests.conftest import ROOT, write_spec

    folder = tmp_path_factory.mktemp("runners")
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = load_model_spec(write_spec(folder, source=src, data=tiny_project / "data"))
    onnx_path = folder / "tiny.onnx"
    run_stage("deployer.frontends.torch:lower", {"spec": spec.to_dict(), "out_path": str(onnx_path),
              "source_sha256": "0" * 64, "toolchain": {}}, workdir=folder, name="lower")
    rng = np.random.default_rng(0)
    calib = folder / "calib.npz"
    np.savez(calib, images=rng.random((4, 1, 3, 64, 64), dtype=np.float32))
    paths = {"onnxruntime": onnx_path}
    for backend, runtime in (("openvino", "openvino"), ("tflite", "litert")):
        declared, extra = backends.get(backend), {}
        if declared.prebuild:   # the shared conversion its artifacts are taken from
            shared = folder / f"{backend}-shared"
            shared.mkdir()
            run_stage(declared.prebuild, {"onnx_path": str(onnx_path), "spec": spec.to_dict(), "options": {},
                                          "calibration": str(calib), "out_dir": str(shared)},
                      workdir=folder, name=f"{backend}-shared")
            extra["prebuilt"] = str(shared)
        built = run_stage(declared.build,
                          {"onnx_path": str(onnx_path), "spec": spec.to_dict(), "precision": "fp32", "options": {},
                           "out_dir": str(folder), "stem": f"tiny_{backend}", "calibration": str(calib), **extra},
                          workdir=folder, name=backend).value
        paths[runtime] = folder / built["path"]
    return spec, paths


@pytest.fixture(scope="module")
def reference(artifacts):
    spec, _ = artifacts
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    with make_runner("torch", "", spec, {}) as runner:
        return x, runner.infer({"images": x})


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "litert"])
def test_runner_matches_reference(artifacts, reference, runtime):
    spec, paths = artifacts
    x, ref = reference
    expected = {"boxes": [1, 84, 4], "scores": [1, 84, 4]}
    with make_runner(runtime, str(paths[runtime]), spec, {}, expected) as runner:
        out = runner.infer({"images": x})
        assert runner.settings
    assert set(out) == {"boxes", "scores"}
    for name in ("boxes", "scores"):
        assert out[name].shape == ref[name].shape
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-4, atol=1e-3)


def test_reference_shapes(reference):
    _, ref = reference
    assert ref["boxes"].shape == (1, 84, 4) and ref["scores"].shape == (1, 84, 4)
    assert ((ref["scores"] >= 0) & (ref["scores"] <= 1)).all()


def test_litert_runner_takes_source_layout(artifacts, reference):
    """The TFLite model itself is NHWC: the runner takes the NCHW source tensor and gives what
    the raw interpreter gives on the transposed one."""
    from ai_edge_litert.interpreter import Interpreter

    spec, paths = artifacts
    x, _ = reference
    raw = Interpreter(model_path=str(paths["litert"])).get_signature_runner()
    assert list(raw.get_input_details()["images"]["shape"]) == [1, 64, 64, 3]
    direct = raw(images=np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    with make_runner("litert", str(paths["litert"]), spec, {}, {"boxes": [1, 84, 4], "scores": [1, 84, 4]}) as runner:
        out = runner.infer({"images": x})
    for name in ("boxes", "scores"):
        np.testing.assert_array_equal(out[name], direct[name])


def test_openvino_runner_records_precision_hint(artifacts):
    spec, paths = artifacts
    with make_runner("openvino", str(paths["openvino"]), spec, {}) as runner:
        assert runner.settings["precision_hint"] == "f32"
