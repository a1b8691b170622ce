"""LiteRT (TensorFlow Lite) runner.

onnx2tf writes NHWC models: inputs arrive here in the source layout and are transposed,
quantized inputs are quantized with the tensor's own scale and zero point, and outputs
are dequantized and transposed back to the source model's shapes.
"""

from __future__ import annotations

import numpy as np

from deployer.errors import StageError
from deployer.runtimes.base import Runner, dequantize, from_layout, quantize, to_layout


class LiteRTRunner(Runner):
    runtime = "litert"

    def __enter__(self):
        from ai_edge_litert.interpreter import Interpreter

        threads = int(self.options.get("threads", 0)) or None
        self.interpreter = Interpreter(model_path=self.artifact, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise StageError(f"{self.artifact}: the TFLite model has no signature; rebuild it with deployer")
        self.runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        self.expected = self.options.get("expected_outputs", {})
        self.settings = {"threads": threads or "default", "signature": next(iter(signatures))}
        return self

    def __exit__(self, *exc):
        self.runner = self.interpreter = None

    def _tensor_name(self, name: str, details: dict) -> str:
        if name in details:
            return name
        # onnx2tf sanitises some names (':' and '/' are not allowed in TF names).
        clean = name.replace(":", "_").replace("/", "_").lstrip("_")
        if clean in details:
            return clean
        raise StageError(f"{self.artifact}: no tensor named '{name}' in the TFLite signature "
                         f"(has {', '.join(details)})")

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = {}
        for name, x in feed.items():
            key = self._tensor_name(name, self.inputs)
            d = self.inputs[key]
            x = to_layout(x, d["shape"], f"{self.artifact} input '{name}'")
            scale, zero = d["quantization"]
            if np.issubdtype(d["dtype"], np.integer) and scale:
                x = quantize(x, d["dtype"], scale, zero)
            args[key] = x.astype(d["dtype"])
        raw = self.runner(**args)
        out = {}
        for name in self.spec.outputs:
            key = self._tensor_name(name, self.outputs)
            y, (scale, zero) = raw[key], self.outputs[key]["quantization"]
            if np.issubdtype(y.dtype, np.integer) and scale:
                y = dequantize(y, scale, zero)
            out[name] = from_layout(y.astype(np.float32), self.expected.get(name), f"{self.artifact} output '{name}'")
        return out
