"""An artifact whose outputs are the head's pre-decode tensors (a full-integer TFLite built from
the body of the graph, ir/split.py), run with its float decoding after it: the artifact in its
own runtime, then the decoding file beside it (`<stem>_decode.tflite` in LiteRT, or
`<stem>_decode.onnx` in ONNX Runtime), so that its outputs are the source model's and parity
measures the pair as an application runs it.
Runs in worker processes (imports the decoding's runtime).
"""

from __future__ import annotations

import dataclasses

import numpy as np


class Decoded:
    """The runner contract of runtimes/base.Runner (context manager, `infer`, `infer_many`,
    `settings`) around an inner runner whose outputs are the decoding's inputs."""

    def __init__(self, runner_class, artifact: str, spec, settings: dict | None, decode: str):
        self.spec = spec
        # A microcontroller runs the decoding in TFLM as well; elsewhere LiteRT runs a .tflite one.
        self.engine = ("onnxruntime" if not decode.endswith(".tflite")
                       else "tflm" if getattr(runner_class, "runtime", "") == "tflm" else "litert")
        shapes, outputs, self._run = {"litert": _litert, "onnxruntime": _onnxruntime, "tflm": _tflm}[self.engine](decode)
        missing = sorted(set(spec.outputs) - set(outputs))
        if missing:
            raise ValueError(f"{decode}: gives {sorted(outputs)}, not the spec's outputs {missing}")
        self.inner = runner_class(artifact, dataclasses.replace(spec, outputs=list(shapes)), settings, shapes)

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)

    @property
    def settings(self) -> dict:
        return {**self.inner.settings, "decode": f"float decoding after the artifact ({self.engine})"}

    def _decode(self, pre: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._run({k: np.ascontiguousarray(v, np.float32) for k, v in pre.items()})
        return {name: out[name] for name in self.spec.outputs}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._decode(self.inner.infer(feed))

    def infer_many(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pre = self.inner.infer_many(feeds)
        n = len(next(iter(pre.values())))
        outs = [self._decode({k: v[i] for k, v in pre.items()}) for i in range(n)]
        return {name: np.stack([o[name] for o in outs]) for name in self.spec.outputs}


def _onnxruntime(path: str):
    """({input: shape}, output names, run) of an ONNX decoding."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1   # a few dozen small ops: threads cost more than they give
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    shapes = {i.name: [d if isinstance(d, int) else 1 for d in i.shape] for i in session.get_inputs()}
    return shapes, names, lambda feed: dict(zip(names, session.run(None, feed)))


def _tflm(path: str):
    """({input: shape}, output names, run) of a float TFLite decoding in TFLM (smallest arena)."""
    from deployer.runtimes.tflm import Micro

    micro = Micro(path)
    return {t.name: list(t.shape) for t in micro.inputs}, [t.name for t in micro.outputs], micro.run


def _litert(path: str):
    """({input: shape}, output names, run) of a float TFLite decoding, through its serving signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    runner = interpreter.get_signature_runner()
    shapes = {k: [int(d) for d in v["shape"]] for k, v in runner.get_input_details().items()}
    return shapes, list(runner.get_output_details()), lambda feed: {k: np.asarray(v) for k, v in runner(**feed).items()}
