"""ONNX Runtime runner (CPU execution provider)."""

from __future__ import annotations

import numpy as np

from deployer.runtimes.base import Runner


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __enter__(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = int(self.options.get("threads", 0))
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.artifact, opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.settings = {"provider": "CPUExecutionProvider", "threads": threads or "default",
                         "onnxruntime": ort.__version__}
        return self

    def __exit__(self, *exc):
        self.session = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, values))
