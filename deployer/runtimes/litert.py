"""LiteRT (TensorFlow Lite) runner.

onnx2tf writes NHWC models: inputs arrive here in the source layout and are transposed,
quantized inputs are quantized with the tensor's own scale and zero point, and outputs
are dequantized and transposed back to the source model's shapes.

Tensor names vary by file: the float files keep the ONNX names in their signature, the
quantized ones name them `output_0`, `output_1`, and the dynamic-range file has no
signature at all (`Identity`, `Identity_1`). Names are matched exactly when they can be
and otherwise by position, which onnx2tf keeps in the ONNX order.
"""

from __future__ import annotations

import re

import numpy as np

from deployer.errors import StageError
from deployer.runtimes.base import Runner, dequantize, from_layout, quantize, to_layout


def _position(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else 0


def match_names(wanted: list[str], available: list[str], what: str) -> dict[str, str]:
    """Map each wanted (ONNX) name to a runtime tensor name."""
    if len(wanted) != len(available):
        raise StageError(f"{what}: the model has {len(available)} tensors ({', '.join(available)}), "
                         f"the spec lists {len(wanted)} ({', '.join(wanted)})")
    clean = {a.replace(":", "_").replace("/", "_").lstrip("_"): a for a in available}
    if all(w in available or w in clean for w in wanted):
        return {w: w if w in available else clean[w] for w in wanted}
    ordered = sorted(available, key=_position)
    return dict(zip(wanted, ordered))


class LiteRTRunner(Runner):
    runtime = "litert"

    def __enter__(self):
        from ai_edge_litert.interpreter import Interpreter

        threads = int(self.options.get("threads", 0)) or None
        self.interpreter = Interpreter(model_path=self.artifact, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = next(iter(signatures))
            self.runner = self.interpreter.get_signature_runner(key)
            inputs, outputs = self.runner.get_input_details(), self.runner.get_output_details()
        else:
            self.runner = None
            self.interpreter.allocate_tensors()
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.input_keys = match_names([i.name for i in self.spec.inputs], list(inputs), f"{self.artifact} inputs")
        self.output_keys = match_names(list(self.spec.outputs), list(outputs), f"{self.artifact} outputs")
        self.inputs = {w: inputs[a] for w, a in self.input_keys.items()}
        self.outputs = {w: outputs[a] for w, a in self.output_keys.items()}
        self.expected = self.options.get("expected_outputs", {})
        self.settings = {"threads": threads or "default", "signature": next(iter(signatures), None),
                         "input_dtype": np.dtype(next(iter(self.inputs.values()))["dtype"]).name}
        return self

    def __exit__(self, *exc):
        self.runner = self.interpreter = None

    def _invoke(self, args: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with inputs keyed by spec name; return outputs keyed by spec name."""
        if self.runner is not None:
            raw = self.runner(**{self.input_keys[name]: x for name, x in args.items()})
            return {name: raw[key] for name, key in self.output_keys.items()}
        for name, x in args.items():
            self.interpreter.set_tensor(self.inputs[name]["index"], x)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(d["index"]) for name, d in self.outputs.items()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = {}
        for name, x in feed.items():
            d = self.inputs[name]
            x = to_layout(x, d["shape"], f"{self.artifact} input '{name}'")
            scale, zero = d["quantization"]
            if np.issubdtype(d["dtype"], np.integer) and scale:
                x = quantize(x, d["dtype"], scale, zero)
            args[name] = x.astype(d["dtype"])
        raw = self._invoke(args)
        out = {}
        for name, d in self.outputs.items():
            y, (scale, zero) = raw[name], d["quantization"]
            if np.issubdtype(y.dtype, np.integer) and scale:
                y = dequantize(y, scale, zero)
            out[name] = from_layout(y.astype(np.float32), self.expected.get(name), f"{self.artifact} output '{name}'")
        return out
