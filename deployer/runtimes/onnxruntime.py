"""ONNX Runtime runner (CPU execution provider): ONNX artifacts, and the reference of ONNX sources."""

from __future__ import annotations

import numpy as np

from deployer.runtimes.base import THREADS, Runner, Runtime, Tensor

RUNTIMES = (Runtime("onnxruntime", "deployer.runtimes.onnxruntime:OnnxRuntimeRunner", accepts=("onnx",),
                    settings=(THREADS,), family="onnx", preload=("onnxruntime",), summary="ONNX Runtime, CPU execution provider"),)

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8,
           "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = self.threads
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.artifact, opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.settings = {"provider": "CPUExecutionProvider", "threads": threads or "default",
                         "onnxruntime": ort.__version__}

    def unload(self) -> None:
        self.session = None

    def io(self):
        def tensors(values):
            return [Tensor(v.name, _static(v.shape), np.dtype(_DTYPES.get(v.type, np.float32))) for v in values]
        return tensors(self.session.get_inputs()), tensors(self.session.get_outputs())

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


def _static(shape) -> tuple[int, ...] | None:
    """A shape with symbolic dimensions cannot steer a layout change: None."""
    return tuple(shape) if all(isinstance(d, int) for d in shape) else None
