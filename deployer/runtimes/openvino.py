"""OpenVINO runner (CPU plugin).

The CPU plugin computes fp32 models in bfloat16 by default on CPUs with AVX-512 BF16
(DESIGN.md §5); parity of an fp32 artifact needs the f32 hint, so it is the default here
and recorded in `settings`.
"""

from __future__ import annotations

import numpy as np

from deployer.runtimes.base import Runner


class OpenVINORunner(Runner):
    runtime = "openvino"

    def __enter__(self):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": self.options.get("precision_hint", "f32")}
        if self.options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(self.options["threads"])
        self.compiled = core.compile_model(core.read_model(self.artifact), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [(o.get_any_name(), o) for o in self.compiled.outputs]
        self.settings = {"device": "CPU", "precision_hint": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                         "threads": int(self.options.get("threads", 0)) or "default", "openvino": ov.__version__}
        return self

    def __exit__(self, *exc):
        self.request = self.compiled = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feed)
        return {name: np.asarray(result[port]).copy() for name, port in self.outputs}
