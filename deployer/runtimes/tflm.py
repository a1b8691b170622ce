"""TensorFlow Lite Micro runner: the real TFLM interpreter (PyPI `tflite-micro`, its reference
kernels), as a microcontroller runs the model.

TFLM allocates everything in one tensor arena when the interpreter is made; the run uses the
smallest arena the model works in (measured first, firmware/micro.py) unless the setting
`arena_bytes` says otherwise, so a passing run also proves the arena the firmware declares.
Tensors have no names in TFLM's details: they come from the flatbuffer's signature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deployer.errors import StageError
from deployer.options import Option
from deployer.runtimes.base import Runner, Runtime, Tensor

ARENA = Option("arena_bytes", int, 0, "tensor arena in bytes (0: the smallest the model works in, measured)",
               minimum=0)

RUNTIMES = (Runtime("tflm", "deployer.runtimes.tflm:TFLMRunner", accepts=("tflite",), settings=(ARENA,),
                    family="tflm", preload=("tflite_micro",),
                    summary="TensorFlow Lite Micro interpreter (reference kernels), smallest working arena"),)


def _tensor(name: str, d: dict) -> Tensor:
    q = d.get("quantization_parameters") or {}
    scales, zeros = list(q.get("scales", [])), list(q.get("zero_points", []))
    quantized = len(scales) == 1 and np.issubdtype(np.dtype(d["dtype"]), np.integer)
    return Tensor(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]),
                  float(scales[0]) if quantized else 0.0, int(zeros[0]) if quantized else 0)


class Micro:
    """One model in a TFLM interpreter: `run({input name: array}) -> {output name: array}`."""

    def __init__(self, path: str, arena: int = 0):
        from deployer.firmware import micro

        data = Path(path).read_bytes()
        name = Path(path).name
        self.graph = micro.check(data, name)     # an op TFLM lacks: named, with its layer
        self.arena = arena or micro.minimum_arena(data, name)
        try:
            self.interpreter = micro.interpreter(data, self.arena)
        except RuntimeError as exc:
            raise StageError(f"{name}: TFLM cannot allocate it in {self.arena} bytes: {exc}") from None
        self.inputs = [_tensor(n, d) for n, d in zip(self.graph.inputs, micro.inputs(self.interpreter, self.graph))]
        self.outputs = [_tensor(n, d) for n, d in zip(self.graph.outputs, micro.outputs(self.interpreter, self.graph))]
        self._run = micro.run

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ys = self._run(self.interpreter, [feed[t.name] for t in self.inputs], len(self.outputs))
        return {t.name: y for t, y in zip(self.outputs, ys)}


class TFLMRunner(Runner):
    runtime = "tflm"

    def load(self) -> None:
        self.micro = Micro(self.artifact, int(self.options.get("arena_bytes") or 0))
        self.settings = {"arena_bytes": self.micro.arena,
                         "arena": "setting" if self.options.get("arena_bytes") else "measured minimum",
                         "kernels": "TFLM reference kernels"}

    def unload(self) -> None:
        self.micro = None

    def io(self):
        return self.micro.inputs, self.micro.outputs

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.micro.run(feed)
