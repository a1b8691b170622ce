"""The registries: one declaration per backend, runtime, frontend and head, consistent with
each other, readable without importing an ML framework."""

from __future__ import annotations

import subprocess
import sys

from deployer import backends, frontends, heads, runtimes
from deployer.registry import resolve
from deployer.runtimes.base import Runner
from deployer.spec import PRECISIONS
from tests.conftest import ROOT


def test_backends_are_consistent_with_runtimes():
    rts = runtimes.registry()
    assert set(backends.registry()) == {"onnx", "tfjs", "tflite", "coreml", "openvino", "tflm", "tf", "torch"}
    for backend in backends.registry().values():
        assert backend.precisions and set(backend.precisions) <= set(PRECISIONS), backend.name
        assert backend.runtimes, backend.name
        for name in backend.runtimes:
            assert backend.format in rts[name].accepts, (backend.name, name)
        for ref in (backend.build, backend.layer_outputs, backend.op_support):
            if ref:
                assert callable(resolve(ref)), ref
        assert not backend.keeps_float or any(o.name == "exclude" for o in backend.options), backend.name
        for option in backend.options:
            assert set(option.precisions) <= set(backend.precisions), (backend.name, option.name)


def test_runtimes_name_runner_classes():
    for rt in runtimes.registry().values():
        cls = resolve(rt.runner)
        assert issubclass(cls, Runner) and cls.runtime == rt.name, rt.name
        # Every runtime runs artifacts, except references that only run their source models;
        # the torch and tensorflow references also run the bridge's artifacts (tf, torch).
        assert rt.accepts or rt.reference, rt.name


def test_frontends_and_heads():
    rts = runtimes.registry()
    for frontend in frontends.registry().values():
        assert callable(resolve(frontend.lower))
        assert frontend.reference_runtime in rts
    assert {"raw", "boxes_scores"} <= set(heads.registry())
    assert heads.registry()["boxes_scores"].detects and not heads.registry()["raw"].detects


def test_registries_import_no_framework():
    code = ("import sys; from deployer import backends, runtimes, frontends, heads; "
            "[r.registry() for r in (backends, runtimes, frontends, heads)]; import deployer.pipeline, deployer.cli; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime', 'openvino', 'coremltools', "
            "'onnx2tf', 'ai_edge_litert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
