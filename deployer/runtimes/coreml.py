"""CoreML runner. On macOS: coremltools' own predict. Elsewhere: a reference interpreter of
the saved ML program in numpy.

The interpreter loads the .mlpackage's program back through coremltools' milproto frontend
and executes its MIL ops one by one, rounding every result to float16 where the program
computes in float16, so tensor and detection parity can be measured on Linux. An op it does
not know makes the run `unverified` with the op named: never a pass by omission.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from deployer.errors import CannotVerify
from deployer.runtimes.base import Runner, Runtime, Tensor

RUNTIMES = (Runtime("coreml", "deployer.runtimes.coreml:CoreMLRunner", accepts=("mlpackage",), settings=(),
                    family="coreml", preload=("deployer.runtimes.coreml:preload",),
                    summary="CoreML: coremltools predict on macOS, deployer's MIL interpreter elsewhere"),)


def preload() -> None:
    """The coreml worker's imports, ahead of its first stage (the interpreter needs no TF)."""
    sys.modules.setdefault("tensorflow", None)
    import coremltools  # noqa: F401


class UnsupportedOp(CannotVerify):
    def __init__(self, op_type: str):
        super().__init__(f"MIL op '{op_type}' is not implemented by deployer's ML program interpreter")
        self.op_type = op_type


# ---------------------------------------------------------------------------- op kernels

def _pad_same(x, k, s, d):
    """Explicit (begin, end) padding of CoreML's 'same' for each spatial dim."""
    pads = []
    for size, kk, ss, dd in zip(x.shape[2:], k, s, d):
        eff = (kk - 1) * dd + 1
        out = -(-size // ss)
        total = max(0, (out - 1) * ss + eff - size)
        pads.append((total // 2, total - total // 2))
    return pads


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    n, c, h, w = x.shape
    oc, icg, kh, kw = weight.shape
    strides = list(strides) if strides is not None else [1, 1]
    dilations = list(dilations) if dilations is not None else [1, 1]
    if pad_type == "same":
        pads = _pad_same(x, (kh, kw), strides, dilations)
    elif pad_type == "custom":
        pads = [(int(pad[0]), int(pad[1])), (int(pad[2]), int(pad[3]))]
    else:
        pads = [(0, 0), (0, 0)]
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1),
                                                   axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]   # n, c, oh, ow, kh, kw
    g = int(groups)
    outs = []
    for gi in range(g):
        xs = win[:, gi * icg:(gi + 1) * icg]
        ws = weight[gi * (oc // g):(gi + 1) * (oc // g)]
        outs.append(np.einsum("ncxykl,ockl->noxy", xs, ws, optimize=True))
    y = np.concatenate(outs, 1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    idx = []
    for i in range(x.ndim):
        b = None if (begin_mask is not None and begin_mask[i]) else int(begin[i])
        e = None if (end_mask is not None and end_mask[i]) else int(end[i])
        s = int(stride[i]) if stride is not None else 1
        idx.append(int(b) if squeeze_mask is not None and squeeze_mask[i] else slice(b, e, s))
    return x[tuple(idx)]


def _upsample_nn(x, scale_factor_height=1, scale_factor_width=1):
    return np.repeat(np.repeat(x, int(scale_factor_height), axis=2), int(scale_factor_width), axis=3)


def _softplus(x):
    return np.logaddexp(0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _concat(values, axis, interleave=False):
    if interleave:
        raise UnsupportedOp("concat(interleave=True)")
    return np.concatenate(values, int(axis))


def _cast(x, dtype):
    return x.astype({"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": bool}[str(dtype)])


KERNELS = {
    "conv": _conv,
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "real_div": lambda x, y: x / y,
    "maximum": lambda x, y: np.maximum(x, y),
    "minimum": lambda x, y: np.minimum(x, y),
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "exp": np.exp,
    "clip": lambda x, alpha, beta: np.clip(x, alpha, beta),
    "softmax": lambda x, axis=-1: np.exp(x - x.max(int(axis), keepdims=True)) / np.exp(
        x - x.max(int(axis), keepdims=True)).sum(int(axis), keepdims=True),
    "reshape": lambda x, shape: x.reshape([int(s) for s in shape]),
    "transpose": lambda x, perm: x.transpose([int(p) for p in perm]),
    "concat": _concat,
    "slice_by_index": _slice_by_index,
    "upsample_nearest_neighbor": _upsample_nn,
    "tile": lambda x, reps: np.tile(x, [int(r) for r in reps]),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
    "squeeze": lambda x, axes=None: np.squeeze(x, None if axes is None else tuple(int(a) for a in axes)),
    "cast": _cast,
    "identity": lambda x: x,
    "matmul": lambda x, y, transpose_x=False, transpose_y=False: np.matmul(
        np.swapaxes(x, -1, -2) if transpose_x else x, np.swapaxes(y, -1, -2) if transpose_y else y),
    "linear": lambda x, weight, bias=None: x @ weight.T + (0 if bias is None else bias),
    "max_pool": None,  # listed as known-unimplemented below: clearer than a KeyError
    "avg_pool": None,
}
KERNELS = {k: v for k, v in KERNELS.items() if v is not None}
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


def _is_fp16(var) -> bool:
    return "fp16" in str(getattr(var, "dtype", ""))


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

    def unsupported(self) -> list[str]:
        known = set(KERNELS) | {"const"} | set(DEQUANTIZE)
        return sorted({t for t in self.ops if t not in known})

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
                raise UnsupportedOp(op.op_type)
            args = {k: _value(v, env) for k, v in op.inputs.items()}
            # Compute in float32, then round to what the program stores (float16 or float32).
            args = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float16 else v)
                    for k, v in args.items()}
            if op.op_type == "concat":
                args["values"] = [v.astype(np.float32) for v in args["values"]]
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
                raise UnsupportedOp(", ".join(missing))
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
