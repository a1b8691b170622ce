"""CoreML runner. On macOS: coremltools' own predict. Elsewhere: a reference interpreter of
the saved ML program in numpy.

The interpreter loads the .mlpackage's program back through coremltools' milproto frontend
and executes its MIL ops one by one with the numpy kernels of `coreml_ops.py`, rounding every
result to float16 where the program computes in float16, so tensor and detection parity can
be measured on Linux. An op it does not know makes the run `unverified` with the op named:
never a pass by omission.

A pipeline of an ML program and Core ML's NonMaximumSuppression model (the CoreML backend's
NMS in the graph) runs its program in the interpreter and its NMS stage in numpy
(`coreml_ops.nms_model`); either way, on macOS too, the stage's `confidence` and
`coordinates` become the finished detections the spec's end2end head names.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from deployer.errors import CannotVerify, OutputMismatch
from deployer.runtimes.base import Runner, Runtime, Tensor
from deployer.runtimes.coreml_ops import KERNELS, UnsupportedOp, nms_model

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


class NMSStage:
    """Core ML's NonMaximumSuppression model as a pipeline stage, in numpy."""

    def __init__(self, spec):
        params = spec.nonMaximumSuppression
        if params.WhichOneof("SuppressionMethod") != "pickTop":
            raise CannotVerify(f"Core ML NonMaximumSuppression method "
                               f"'{params.WhichOneof('SuppressionMethod')}' is not implemented by deployer's "
                               "interpreter; verify the artifact on macOS")
        if params.iouThresholdInputFeatureName or params.confidenceThresholdInputFeatureName:
            raise CannotVerify("a Core ML NonMaximumSuppression stage with threshold inputs is not run by "
                               "deployer's interpreter (it feeds only the image); verify the artifact on macOS")
        self.params = params
        self.max_boxes = None
        for out in spec.description.output:   # the first dimension's range caps the boxes kept
            sizes = out.type.multiArrayType.shapeRange.sizeRanges
            if sizes and sizes[0].upperBound >= 0:
                self.max_boxes = int(sizes[0].upperBound)

    def run(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        p = self.params
        confidence = features[p.confidenceInputFeatureName]
        coordinates = features[p.coordinatesInputFeatureName]
        kept = nms_model(confidence, coordinates, p.iouThreshold, p.confidenceThreshold, p.pickTop.perClass,
                         self.max_boxes)
        return {p.confidenceOutputFeatureName: confidence[kept], p.coordinatesOutputFeatureName: coordinates[kept]}


def _stages(spec) -> tuple:
    """(the ML program's model spec, the NMS stage or None) of a package's top model."""
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        return spec, None
    models = list(spec.pipeline.models) if kind == "pipeline" else []
    kinds = [m.WhichOneof("Type") for m in models]
    if kinds != ["mlProgram", "nonMaximumSuppression"]:
        raise CannotVerify(f"a Core ML {kind} model ({' + '.join(kinds) or 'no ML program'}) is not run by "
                           "deployer's interpreter, which runs ML programs and [ML program, NonMaximumSuppression] "
                           "pipelines; verify the artifact on macOS")
    return models[0], NMSStage(models[1])


class MILProgram:
    """An ML program loaded from an .mlpackage, executable in numpy; in a pipeline, followed by
    its NonMaximumSuppression stage."""

    def __init__(self, package: str):
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load

        model = ct.models.MLModel(package, skip_model_load=True)
        spec = model.get_spec()
        program, self.nms = _stages(spec)
        weights = Path(package) / "Data" / "com.apple.CoreML" / "weights"
        self.program = load(program, program.specificationVersion, file_weights_dir=str(weights))
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
        outputs = {v.name: env[v.name].astype(np.float32) for v in self.function.outputs}
        return self.nms.run(outputs) if self.nms is not None else outputs


def finished_detections(raw: dict[str, np.ndarray], spec) -> dict[str, np.ndarray]:
    """The NMS stage's `confidence` (M, C) and `coordinates` (M, 4, normalised centre-size) as
    the end2end outputs the spec names: boxes (1, K, 4) xyxy in input pixels, scores (1, K) the
    box's confidence for its class, classes (1, K) that class (the argmax, as the stage labels
    it), count (1,) = min(M, K); K = head.max_detections, rows from the count on are zeros.
    Rows keep the stage's order: descending confidence."""
    head, inp = spec.head, spec.inputs[0]
    k = int(head.max_detections)
    coordinates = np.asarray(raw["coordinates"], np.float32).reshape(-1, 4)
    confidence = np.asarray(raw["confidence"], np.float32)
    confidence = confidence.reshape(-1, confidence.shape[-1])
    m = min(len(coordinates), k)
    boxes, scores, classes = np.zeros((1, k, 4), np.float32), np.zeros((1, k), np.float32), np.zeros((1, k), np.float32)
    if m:
        centre, half = coordinates[:m, :2], coordinates[:m, 2:] / 2
        size = np.array([inp.width, inp.height] * 2, np.float32)
        boxes[0, :m] = np.concatenate([centre - half, centre + half], 1) * size
        scores[0, :m] = confidence[:m].max(1)
        classes[0, :m] = confidence[:m].argmax(1)
    p = head.params
    out = {p["boxes"]: boxes, p["scores"]: scores, p["classes"]: classes}
    if p.get("count"):
        out[p["count"]] = np.array([m], np.float32)
    return out


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
        self.graph_nms = bool(self.spec.head.params.get("graph_nms"))
        if self.graph_nms and self.program is not None and self.program.nms is None:
            raise OutputMismatch(f"{self.artifact}: the spec has NMS in the graph, the package has no "
                                 "NonMaximumSuppression stage")
        self.settings = {"engine": engine, "image_input": bool(self.image)}
        if self.graph_nms:
            self.settings["nms"] = ("Core ML NonMaximumSuppression stage" if self.program is None
                                    else "Core ML NonMaximumSuppression stage in numpy (deployer)")

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
            raw = self.program.run(feed)
        else:
            from PIL import Image

            name = self.spec.inputs[0].name
            hwc = feed[name][0].transpose(1, 2, 0)
            raw = dict(self.model.predict({name: Image.fromarray(np.clip(hwc, 0, 255).round().astype(np.uint8))}))
        return finished_detections(raw, self.spec) if self.graph_nms else raw
