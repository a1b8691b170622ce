"""LiteRT (TensorFlow Lite) runner.

onnx2tf writes NHWC models, and full-integer ones take and give int8 tensors: the runner
contract (runtimes/base.py) transposes and (de)quantizes from each tensor's own details.

Tensor names vary by file: the float files keep the ONNX names in their signature, the
quantized ones name them `output_0`, `output_1`, and the dynamic-range file has no
signature at all (`Identity`, `Identity_1`); `match_names` handles all three.
"""

from __future__ import annotations

import numpy as np

from deployer.errors import first_line
from deployer.runtimes.base import THREADS, Runner, Runtime, Tensor

RUNTIMES = (Runtime("litert", "deployer.runtimes.litert:LiteRTRunner", accepts=("tflite",), settings=(THREADS,),
                    family="litert", preload=("ai_edge_litert.interpreter",), summary="LiteRT (TensorFlow Lite) interpreter, XNNPACK on CPU"),)


def _tensor(name: str, d: dict) -> Tensor:
    scale, zero = d["quantization"]
    return Tensor(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zero))


class LiteRTRunner(Runner):
    runtime = "litert"

    def load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        threads = self.threads or None
        delegate = "XNNPACK (default)"
        try:
            self.interpreter = Interpreter(model_path=self.artifact, num_threads=threads)
            self.interpreter.allocate_tensors()
        except RuntimeError as exc:
            if "XNNPACK" not in str(exc):
                raise
            # XNNPACK refuses some int8 graphs at prepare time; LiteRT's own kernels run them
            # (an app with the default delegate would hit the same refusal: the run says so).
            self.interpreter = Interpreter(model_path=self.artifact, num_threads=threads,
                                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            delegate = f"builtin kernels (XNNPACK failed to prepare: {first_line(exc, 160)})"
        signatures = self.interpreter.get_signature_list()
        if signatures:
            self.runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            self.inputs, self.outputs = self.runner.get_input_details(), self.runner.get_output_details()
        else:
            self.runner = None
            self.interpreter.allocate_tensors()
            self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.settings = {"threads": threads or "default", "delegate": delegate, "signature": next(iter(signatures), None),
                         "input_dtype": np.dtype(next(iter(self.inputs.values()))["dtype"]).name}

    def unload(self) -> None:
        self.runner = self.interpreter = None

    def io(self):
        return ([_tensor(k, d) for k, d in self.inputs.items()], [_tensor(k, d) for k, d in self.outputs.items()])

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.runner is not None:
            return dict(self.runner(**feed))
        for name, x in feed.items():
            self.interpreter.set_tensor(self.inputs[name]["index"], x)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(d["index"]) for name, d in self.outputs.items()}
