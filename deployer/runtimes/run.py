"""Worker stage: run an artifact over a set of inputs in one runtime; write the outputs."""

from __future__ import annotations

import importlib
import time

import numpy as np

from deployer.errors import UserError
from deployer.spec import ModelSpec

RUNNERS = {
    "torch": "deployer.frontends.torch:TorchRunner",
    "tensorflow": "deployer.frontends.tensorflow:TensorFlowRunner",
    "onnxruntime": "deployer.runtimes.onnxruntime:OnnxRuntimeRunner",
    "openvino": "deployer.runtimes.openvino:OpenVINORunner",
    "litert": "deployer.runtimes.litert:LiteRTRunner",
    "ort-web-node": "deployer.runtimes.js:OrtWebNode",
    "ort-web-chromium": "deployer.runtimes.js:OrtWebChromium",
    "tfjs-node": "deployer.runtimes.js:TfjsNode",
    "tfjs-chromium": "deployer.runtimes.js:TfjsChromium",
    "coreml": "deployer.runtimes.coreml:CoreMLRunner",
}


def runner_class(runtime: str):
    target = RUNNERS.get(runtime, runtime if ":" in runtime else "")
    if not target:
        raise UserError(f"unknown runtime '{runtime}' (known: {', '.join(RUNNERS)})")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_runner(runtime: str, artifact: str, spec: ModelSpec, options: dict):
    cls = runner_class(runtime)
    if runtime in ("torch", "tensorflow"):  # the references load the source model from the spec
        return cls(spec)
    return cls(artifact, spec, options)


def run_inputs(runtime: str, artifact: str, spec: dict, inputs: str, outputs: str, options: dict) -> dict:
    """Run every sample of the `inputs` .npz (arrays of shape (n, *input_shape)) one at a time."""
    from deployer.runtimes.coreml import UnsupportedOp

    spec = ModelSpec.from_dict(spec)
    try:
        return _run_all(runtime, artifact, spec, inputs, outputs, options)
    except UnsupportedOp as exc:  # cannot be executed here: the verdict must say so, not pass
        return {"runtime": runtime, "unverified": str(exc), "settings": {}}


def _run_all(runtime: str, artifact: str, spec: ModelSpec, inputs: str, outputs: str, options: dict) -> dict:
    data = np.load(inputs)
    n = len(data[spec.inputs[0].name])
    collected: dict[str, list] = {name: [] for name in spec.outputs}
    start = time.perf_counter()
    with make_runner(runtime, artifact, spec, options) as runner:
        if hasattr(runner, "infer_all"):  # runtimes outside Python take the whole set at once
            stacked = runner.infer_all({i.name: data[i.name] for i in spec.inputs})
        else:
            for k in range(n):
                result = runner.infer({i.name: data[i.name][k] for i in spec.inputs})
                for name in spec.outputs:
                    collected[name].append(result[name])
            stacked = {name: np.stack(v) for name, v in collected.items()}
        settings = dict(getattr(runner, "settings", {}))
    np.savez(outputs, **{name: stacked[name] for name in spec.outputs})
    return {"runtime": runtime, "images": n, "settings": settings,
            "seconds": round(time.perf_counter() - start, 3)}
