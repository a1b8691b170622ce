"""What a runtime is, and the runner contract every runtime follows (docs/ARCHITECTURE.md,
"Adding a runtime").

A runtime module declares `RUNTIMES` (one `Runtime` each) and a `Runner` subclass per
runtime. The base class does everything runners share, so each runtime writes only its own
loading and execution:

- inputs arrive in the source model's convention (layout, float32) under the spec's
  names; the base class matches them to the runtime's tensors, converts NCHW <-> NHWC to
  the runtime's shape and quantizes integer inputs with the tensor's scale and zero point;
- outputs come back under the spec's names, dequantized, in the source model's layout,
  and checked against the source model's shapes (`expected_outputs`): a missing output or
  a wrong shape is an `OutputMismatch`, which fails that run;
- a runtime that cannot execute an artifact here raises `CannotVerify` (errors.py).

Subclasses implement `load()`, `io()` and `infer_impl()`; `infer_many_impl()` when the
runtime is faster given every sample at once (the JavaScript runtimes), `unload()` when
there is something to free.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from deployer.errors import OutputMismatch
from deployer.options import Option

THREADS = Option("threads", int, 0, "inference threads (0: the runtime's default)", minimum=0)


@dataclass(frozen=True)
class Runtime:
    name: str
    runner: str                       # 'module:Class', a Runner subclass
    accepts: tuple[str, ...]          # artifact formats it runs (Backend.format); () for references
    settings: tuple[Option, ...] = (THREADS,)
    reference: bool = False           # runs the source model the spec names (the parity reference)
    family: str = ""                  # the framework it imports (torch, tensorflow, openvino, ...)
    # Its family's workers are cheap to start (they drive other processes): several may run
    # side by side. Other families run one stage at a time, in one warm worker.
    spread: bool = False
    preload: tuple[str, ...] = ()     # imported by its family's worker ahead of its first stage (Backend.preload)
    summary: str = ""


@dataclass(frozen=True)
class Tensor:
    """One input or output as the runtime sees it."""

    name: str
    shape: tuple[int, ...] | None = None   # None: whatever the source gives (no layout change)
    dtype: np.dtype = np.dtype(np.float32)
    scale: float = 0.0                     # quantization of integer tensors; 0: not quantized
    zero_point: int = 0


class Runner:
    runtime = "?"

    def __init__(self, artifact: str, spec, settings: dict | None = None,
                 expected_outputs: dict[str, list[int]] | None = None):
        self.artifact, self.spec = artifact, spec
        self.options = dict(settings or {})
        self.expected = {k: tuple(int(d) for d in v) for k, v in (expected_outputs or {}).items()}
        self.settings: dict = {}          # how it ran (threads, hints, engine) for the manifest
        self._inputs: dict[str, Tensor] = {}
        self._outputs: dict[str, Tensor] | None = None

    # -- what a runtime implements -------------------------------------------------------
    def load(self) -> None:
        raise NotImplementedError

    def unload(self) -> None:
        pass

    def io(self) -> tuple[list[Tensor], list[Tensor] | None]:
        """The runtime's inputs and outputs; outputs None when known only after a run."""
        raise NotImplementedError

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One sample, keyed and shaped as the runtime wants; outputs keyed by runtime name."""
        raise NotImplementedError

    def infer_many_impl(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [self.infer_impl(f) for f in feeds]

    @property
    def threads(self) -> int:
        """Threads to run with: the `threads` setting, else the build's share of the cores
        (DEPLOYER_THREADS, stages.thread_env), else 0: the runtime's own default."""
        return int(self.options.get("threads") or os.environ.get("DEPLOYER_THREADS", 0))

    # -- the contract ------------------------------------------------------------------
    def __enter__(self):
        self.load()
        inputs, outputs = self.io()
        names = match_names([i.name for i in self.spec.inputs], [t.name for t in inputs], f"{self.artifact} inputs")
        by_name = {t.name: t for t in inputs}
        self._inputs = {want: by_name[have] for want, have in names.items()}
        if outputs is not None:
            self._outputs = self._match_outputs(outputs)
        return self

    def __exit__(self, *exc):
        self.unload()
        return None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One sample in the source convention -> outputs in the source convention."""
        return self._from_runtime(self.infer_impl(self._to_runtime(feed)))

    def infer_many(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every sample of (n, *input_shape) arrays -> (n, *output_shape) arrays."""
        n = len(next(iter(feeds.values())))
        raw = self.infer_many_impl([self._to_runtime({k: v[i] for k, v in feeds.items()}) for i in range(n)])
        outs = [self._from_runtime(r) for r in raw]
        return {name: np.stack([o[name] for o in outs]) for name in self.spec.outputs}

    # -- conversions -------------------------------------------------------------------
    def _to_runtime(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(feed) != set(self._inputs):
            raise ValueError(f"feed has {sorted(feed)}, the spec's inputs are {sorted(self._inputs)}")
        out = {}
        for name, x in feed.items():
            t = self._inputs[name]
            if t.shape is not None:
                x = to_layout(x, t.shape, f"{self.artifact} input '{name}'")
            if np.issubdtype(t.dtype, np.integer) and t.scale:
                x = quantize(x, t.dtype, t.scale, t.zero_point)
            out[t.name] = np.ascontiguousarray(x, dtype=t.dtype)
        return out

    def _match_outputs(self, outputs: list[Tensor]) -> dict[str, Tensor]:
        names = match_names(list(self.spec.outputs), [t.name for t in outputs], f"{self.artifact} outputs")
        by_name = {t.name: t for t in outputs}
        return {want: by_name[have] for want, have in names.items()}

    def _from_runtime(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._outputs is None:   # known only now (runtimes that name outputs when they run)
            self._outputs = self._match_outputs([Tensor(k, None, np.asarray(v).dtype) for k, v in raw.items()])
        out = {}
        for name, t in self._outputs.items():
            if t.name not in raw:
                raise OutputMismatch(f"{self.artifact}: output '{t.name}' (the spec's '{name}') was not produced; "
                                     f"got {sorted(raw)}")
            y = np.asarray(raw[t.name])
            if np.issubdtype(y.dtype, np.integer) and t.scale:
                y = dequantize(y, t.scale, t.zero_point)
            out[name] = from_layout(y.astype(np.float32), self.expected.get(name), f"{self.artifact} output '{name}'")
        return out


def _position(name: str) -> int:
    # A TensorFlow tensor name ends in its output index (":0"): the node's number is before it.
    match = re.search(r"(\d+)$", re.sub(r":\d+$", "", name))
    return int(match.group(1)) if match else 0


def match_names(wanted: list[str], available: list[str], what: str) -> dict[str, str]:
    """Map each wanted (spec) name to a runtime tensor name: exactly where every name is
    found (converters may turn ':' and '/' into '_'), else by position, which converters
    keep in the ONNX order (onnx2tf's quantized files name them output_0, output_1, ...).
    Names found exactly are kept when only some are (TF.js may key some outputs by their
    graph tensor, Identity_2:0); the rest go by position."""
    if len(wanted) != len(available):
        raise OutputMismatch(f"{what}: the model has {len(available)} tensors ({', '.join(available)}), "
                             f"the spec lists {len(wanted)} ({', '.join(wanted)})")
    clean = {a.replace(":", "_").replace("/", "_").lstrip("_"): a for a in available}
    found = {w: w if w in available else clean[w] for w in wanted if w in available or w in clean}
    rest = sorted((a for a in available if a not in found.values()), key=_position)
    return {**found, **dict(zip([w for w in wanted if w not in found], rest))}


def to_layout(x: np.ndarray, shape: tuple | list, what: str) -> np.ndarray:
    """Give `x` the runtime's `shape`: unchanged, or NCHW <-> NHWC when that is what it wants."""
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    for perm in ((0, 2, 3, 1), (0, 3, 1, 2)):
        if x.ndim == 4 and x.transpose(perm).shape == shape:
            return np.ascontiguousarray(x.transpose(perm))
    raise OutputMismatch(f"{what}: runtime expects shape {shape}, the source model gives {x.shape}")


def from_layout(y: np.ndarray, expected: tuple | list | None, what: str) -> np.ndarray:
    """Bring a runtime output back to the source model's shape (NHWC -> NCHW where needed)."""
    if expected is None:
        return y
    expected = tuple(int(d) for d in expected)
    if y.shape == expected:
        return y
    if y.ndim == 4 and y.transpose(0, 3, 1, 2).shape == expected:
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    raise OutputMismatch(f"{what}: runtime gives shape {y.shape}, the source model gives {expected}")


def quantize(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
