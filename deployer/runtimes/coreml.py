"""CoreML runner. On macOS: coremltools' own predict. Elsewhere: a reference interpreter of
the saved ML program in numpy.

The interpreter loads the .mlpackage's program back through coremltools' milproto frontend
and executes its MIL ops one by one with the numpy kernels of `coreml_ops.py`, rounding every
result to float16 where the program computes in float16, so tensor and detection parity can
be measured on Linux. An op it does not know makes the run `unverified` with the op named:
never a pass by omission.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from deployer.runtimes.base import Runner, Runtime, Tensor
from deployer.runtimes.coreml_ops import KERNELS, UnsupportedOp

RUNTIMES = (Runtime("coreml", "deployer.runtimes.coreml:CoreMLRunner", accepts=("mlpackage",), settings=(),
                    family="coreml", preload=("deployer.runtimes.coreml:preload",),
                    summary="CoreML: coremltools predict on macOS, deployer's MIL interpreter elsewhere"),)


def preload() -> None:
    """The coreml worker's imports, ahead of its first stage (the interpreter needs no TF)."""
    sys.modules.setdefault("tensorflow", None)
    import coremltools  # noqa: F401


DEQUANTIZE = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def _dequantize(op) -> np.ndarray:
    """Weights stored compressed (coremltools.optimize): expand them as CoreML does at load."""
    if op.op_type == "constexpr_affine_dequantize":
        q = op.quantized_data.val.astype(np.float32)
        axis = int(op.axis.val)
        shape = [1] * q.ndim
        shape[axis] = -1
        zero = np.asarray(op.zero_point.val, np.float32)
        scale = np.asarray(op.scale.val, np.float32)
        zero = zero.reshape(shape) if zero.ndim else zero
        scale = scale.reshape(shape) if scale.ndim else scale
        return ((q - zero) * scale).astype(np.float16 if _is_fp16(op.outputs[0]) else np.float32)
    data = op.data.val.astype(np.float32)
    scale = np.asarray(op.scale.val, np.float32)
    offset = None if op.offset is None else np.asarray(op.offset.val, np.float32)
    # Each scale (and offset) covers a block of the data along every axis.
    reps = [d // s for d, s in zip(data.shape, scale.shape)]
    for axis, r in enumerate(reps):
        scale = np.repeat(scale, r, axis=axis)
        if offset is not None:
            offset = np.repeat(offset, r, axis=axis)
    out = (data - (0 if offset is None else offset)) * scale
    return out.astype(np.float16 if _is_fp16(op.outputs[0]) else np.float32)


def _value(var, env):
    if var is None:
        return None
    if isinstance(var, (list, tuple)):
        return [_value(v, env) for v in var]
    if var.name in env:
        return env[var.name]
    if var.val is not None:
        return np.asarray(var.val)
    raise KeyError(var.name)


def _as_float32(value):
    """float16 arrays (alone or in a list, as concat's and stack's values) as float32."""
    if isinstance(value, list):
        return [_as_float32(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    return value


def _is_fp16(var) -> bool:
    # MIL dtypes are classes named after the type ('fp16'); their str() does not say it.
    return getattr(getattr(var, "dtype", None), "__name__", "") == "fp16"


class MILProgram:
    """An ML program loaded from an .mlpackage, executable in numpy."""

    def __init__(self, package: str):
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load

        model = ct.models.MLModel(package, skip_model_load=True)
        spec = model.get_spec()
        weights = Path(package) / "Data" / "com.apple.CoreML" / "weights"
        self.program = load(spec, spec.specificationVersion, file_weights_dir=str(weights))
        self.function = self.program.functions["main"]
        self.metadata = dict(spec.description.metadata.userDefined)
        self.ops = [op.op_type for op in self.function.operations]

    def unsupported(self) -> dict[str, list[str]]:
        """Op types the interpreter lacks -> the names of the program's ops of that type."""
        known = set(KERNELS) | {"const"} | set(DEQUANTIZE)
        missing: dict[str, list[str]] = {}
        for op in self.function.operations:
            if op.op_type not in known:
                missing.setdefault(op.op_type, []).append(op.name)
        return dict(sorted(missing.items()))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds already shaped as the program's inputs (runner contract)."""
        env = {}
        for name, var in self.function.inputs.items():
            x = feeds[name]
            env[name] = x.astype(np.float16) if _is_fp16(var) else x.astype(np.float32)
        for op in self.function.operations:
            if op.op_type == "const":
                continue
            if op.op_type in DEQUANTIZE:
                env[op.outputs[0].name] = _dequantize(op)
                continue
            kernel = KERNELS.get(op.op_type)
            if kernel is None:
                raise UnsupportedOp(op.op_type, f"'{op.name}'")
            # Compute in float32, then round to what the program stores (float16 or float32).
            args = {k: _as_float32(_value(v, env)) for k, v in op.inputs.items()}
            out = kernel(**args)
            outs = out if isinstance(out, tuple) else (out,)
            for var, value in zip(op.outputs, outs):
                value = np.asarray(value)
                if op.op_type != "cast" and np.issubdtype(value.dtype, np.floating):
                    value = value.astype(np.float16 if _is_fp16(var) else np.float32)
                env[var.name] = value
        return {v.name: env[v.name].astype(np.float32) for v in self.function.outputs}


class CoreMLRunner(Runner):
    """Feeds the image input with raw pixels rebuilt from the source-convention tensor."""

    runtime = "coreml"

    def load(self) -> None:
        if platform.system() == "Darwin":
            import coremltools as ct

            self.model = ct.models.MLModel(self.artifact)
            self.program = None
            engine = "coremltools.predict"
            meta = self.model.user_defined_metadata
        else:
            sys.modules.setdefault("tensorflow", None)  # the interpreter needs no TF: keep it out
            self.program = MILProgram(self.artifact)
            engine = "deployer MIL interpreter (numpy, float16 rounding)"
            meta = self.program.metadata
            missing = self.program.unsupported()
            if missing:
                names = [f"'{n}'" for ops in missing.values() for n in ops]
                raise UnsupportedOp("', '".join(missing), ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))
        self.image = json.loads(meta.get("deployer.image_input", "null"))
        self.settings = {"engine": engine, "image_input": bool(self.image)}

    def io(self):
        # An image input is channels-first inside the program, whatever the source's layout.
        if self.program is not None:
            inputs = [Tensor(name, tuple(int(d) for d in var.shape))
                      for name, var in self.program.function.inputs.items()]
        else:
            inputs = [Tensor(i.name, (1, 3, i.height, i.width)) for i in self.spec.inputs]
        return inputs, [Tensor(name) for name in self.spec.outputs]

    def _to_pixels(self, x: np.ndarray) -> np.ndarray:
        """Undo the spec's normalisation (x is NCHW here): the ImageType input takes raw pixels."""
        if not self.image:
            return x
        pre = self.spec.preprocess
        std = np.asarray(pre.std, np.float32).reshape(1, 3, 1, 1)
        mean = np.asarray(pre.mean, np.float32).reshape(1, 3, 1, 1)
        return (x * std + mean) * pre.scale

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: self._to_pixels(v) for k, v in feed.items()}
        if self.program is not None:
            return self.program.run(feed)
        from PIL import Image

        name = self.spec.inputs[0].name
        hwc = feed[name][0].transpose(1, 2, 0)
        return dict(self.model.predict({name: Image.fromarray(np.clip(hwc, 0, 255).round().astype(np.uint8))}))
