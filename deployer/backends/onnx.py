"""ONNX backend: the web artifact for ONNX Runtime (Web), in fp32, fp16 or static INT8 (QDQ).

INT8 uses onnxruntime.quantization with our calibration feeds (MinMax, Entropy or
Percentile, per the profile's `calibration_method`), per-channel int8 weights and uint8
activations; `exclude` keeps the named nodes in float (the accuracy-aware fallback).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from deployer.backends.base import Backend, int8_options
from deployer.errors import first_line
from deployer.options import Option
from deployer.quantize.feeds import calibration_batches
from deployer.quantize.head_float import head_exclusions, head_note
from deployer.spec import ModelSpec

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

BACKEND = Backend(
    name="onnx", build="deployer.backends.onnx:build", format="onnx", precisions=("fp32", "fp16", "int8"),
    runtimes=("onnxruntime",),
    options=int8_options(fallback=True) + (
        Option("calibration_method", str, "minmax", "ONNX Runtime calibrator", choices=CALIBRATION_METHODS,
               precisions=("int8",)),),
    layer_outputs="deployer.backends.onnx:layer_outputs", keeps_float=True, web_engine="ort",
    op_support="deployer.backends.onnx:unsupported_ops", family="onnx", graph_nms=True,
    preload=("onnx", "onnxruntime", "onnxruntime.quantization"),
    summary="ONNX for ONNX Runtime and ONNX Runtime Web: fp32, fp16, static INT8 (QDQ)")


def _fp16(onnx_path: str, out: Path) -> list[str]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(onnx_path)
    # fp32 inputs and outputs are kept so callers feed the same tensors as before.
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(half, str(out))
    return ["weights and activations in float16; inputs and outputs kept float32"]


def _int8(onnx_path: str, spec: ModelSpec, options: dict, calibration: str, out: Path) -> tuple[list[str], dict]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = options["calibration_method"]
    feeds = calibration_batches(calibration, spec, options["calibration_images"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    exclude, decoding = head_exclusions(onnx_path, options)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(onnx_path, str(prepped), skip_symbolic_shape=True)
        quantize_static(str(prepped), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                          "percentile": CalibrationMethod.Percentile}[method],
                        nodes_to_exclude=exclude, extra_options={"ActivationSymmetric": False})
    info = {"method": method, "calibration_images": len(feeds), "format": "QDQ", "weights": "int8 per-channel",
            "activations": "uint8 per-tensor", "kept_float": exclude, "head_float": decoding}
    return [f"static INT8 QDQ, {method} calibration on {len(feeds)} images", *head_note(decoding)], info


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    spec = ModelSpec.from_dict(spec)
    out = Path(out_dir) / f"{stem}.onnx"
    result = {"path": out.name, "files": [out.name], "format": "onnx"}
    if precision == "fp32":
        shutil.copyfile(onnx_path, out)
        return {**result, "notes": []}
    if precision == "fp16":
        return {**result, "notes": _fp16(onnx_path, out)}
    notes, info = _int8(onnx_path, spec, options, calibration, out)
    return {**result, "notes": notes, "quantization": info}


def layer_outputs(artifact: str, wanted: set[str], feeds: list[dict]) -> dict[str, np.ndarray]:
    """Per-layer probe: the artifact's tensors under the float graph's names."""
    import onnx

    from deployer.ir.probe import expose_all, run_exposed

    raw = run_exposed(expose_all(onnx.load(artifact)), feeds)
    # In a QDQ graph the value consumers see is the DequantizeLinear output (the float
    # tensor of the same name can be, e.g., a Conv output before its fused ReLU).
    measured = {}
    for name in wanted:
        value = raw.get(f"{name}_DequantizeLinear_Output", raw.get(name))
        if value is not None:
            measured[name] = value
    return measured


def unsupported_ops(path: str, ops: dict) -> list[str]:
    """What ONNX Runtime's CPU provider refuses in this model (its message names the op)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return []
    except Exception as exc:  # noqa: BLE001 - the session's message names the op
        return [first_line(exc, 200)]
