"""Calibration feeds: the spec's calibration images, preprocessed once (inputs.py), handed to
each backend in its layout, dtype and count, always in the same order."""

from __future__ import annotations

import numpy as np

from deployer.errors import UserError
from deployer.spec import ModelSpec

DEFAULT_COUNT = 64


def calibration_batches(calibration: str, spec: ModelSpec, count: int | None = None,
                        layout: str = "source") -> list[dict[str, np.ndarray]]:
    """A list of feeds {input name: (1, ...) float32}, in dataset order; NHWC on request."""
    data = np.load(calibration)
    name = spec.inputs[0].name
    x = data[name]
    if count is not None:
        if count <= 0:
            raise UserError(f"calibration count must be positive, got {count}")
        x = x[:count]
    if layout == "NHWC" and spec.inputs[0].layout == "NCHW":
        x = x.transpose(0, 1, 3, 4, 2)
    return [{name: np.ascontiguousarray(sample, dtype=np.float32)} for sample in x]


def calibration_array(calibration: str, spec: ModelSpec, count: int | None = None, layout: str = "source") -> np.ndarray:
    """The same feeds stacked into one (n, ...) batch (onnx2tf wants a single array)."""
    return np.concatenate([f[spec.inputs[0].name] for f in calibration_batches(calibration, spec, count, layout)])
