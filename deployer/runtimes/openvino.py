"""OpenVINO runner (CPU plugin): OpenVINO IR and ONNX artifacts.

The CPU plugin computes fp32 models in bfloat16 by default on CPUs with AVX-512 BF16
(docs/ARCHITECTURE.md, "Toolchain facts"); parity of an fp32 artifact needs the f32 hint,
so it is the default here and recorded in `settings`.
"""

from __future__ import annotations

import numpy as np

from deployer.options import Option
from deployer.runtimes.base import THREADS, Runner, Runtime, Tensor

PRECISION_HINT = Option("precision_hint", str, "f32", "CPU plugin inference precision", choices=("f32", "bf16", "f16"))

RUNTIMES = (Runtime("openvino", "deployer.runtimes.openvino:OpenVINORunner", accepts=("openvino-ir", "onnx"),
                    settings=(THREADS, PRECISION_HINT), family="openvino", preload=("openvino",),
                    summary="OpenVINO CPU plugin (f32 precision hint unless set)"),)


class OpenVINORunner(Runner):
    runtime = "openvino"

    def load(self) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": self.options.get("precision_hint", PRECISION_HINT.default)}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.compiled = core.compile_model(core.read_model(self.artifact), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.settings = {"device": "CPU",
                         "precision_hint": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                         "threads": self.threads or "default", "openvino": ov.__version__}

    def unload(self) -> None:
        self.request = self.compiled = None

    def io(self):
        def tensors(ports):
            return [Tensor(p.get_any_name(), tuple(p.get_partial_shape().to_shape())
                           if p.get_partial_shape().is_static else None) for p in ports]
        return tensors(self.compiled.inputs), tensors(self.compiled.outputs)

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feed)
        return {port.get_any_name(): np.asarray(value).copy() for port, value in result.items()}
