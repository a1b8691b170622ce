"""What every runner shares: the runner contract and layout conversion.

A runner is a context manager built as `Runner(artifact_path, spec, options)` whose
`infer({input: array}) -> {output: array}` takes and returns tensors in the source
model's convention (layout, float dtype); the runner converts to and from what its
runtime wants (NHWC, int8) itself. `settings` records how it ran (threads, hints) for
the manifest.
"""

from __future__ import annotations

import numpy as np

from deployer.errors import StageError


class Runner:
    runtime = "?"

    def __init__(self, artifact: str, spec, options: dict | None = None):
        self.artifact, self.spec, self.options = artifact, spec, dict(options or {})
        self.settings: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def to_layout(x: np.ndarray, shape: tuple | list, what: str) -> np.ndarray:
    """Give `x` the runtime's `shape`: unchanged, or NCHW <-> NHWC when that is what it wants."""
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    for perm in ((0, 2, 3, 1), (0, 3, 1, 2)):
        if x.ndim == 4 and x.transpose(perm).shape == shape:
            return np.ascontiguousarray(x.transpose(perm))
    raise StageError(f"{what}: runtime expects shape {shape}, the source model gives {x.shape}")


def from_layout(y: np.ndarray, expected: tuple | list | None, what: str) -> np.ndarray:
    """Bring a runtime output back to the source model's shape (NHWC -> NCHW where needed)."""
    if expected is None:
        return y
    expected = tuple(int(d) for d in expected)
    if y.shape == expected:
        return y
    if y.ndim == 4 and y.transpose(0, 3, 1, 2).shape == expected:
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    raise StageError(f"{what}: runtime gives shape {y.shape}, the source model gives {expected}")


def quantize(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
