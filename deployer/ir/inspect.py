"""Worker stage for `deployer inspect`: an ONNX model's interface, ops and backend support."""

from __future__ import annotations

import importlib.util

from deployer.ir import onnx_ir


def _onnxruntime_unsupported(path: str) -> list[str]:
    import onnxruntime as ort

    try:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return []
    except Exception as exc:  # noqa: BLE001 - the session's message names the op
        return [str(exc).splitlines()[0][:200]]


def _openvino_unsupported(path: str, ops: dict) -> list[str]:
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:  # noqa: BLE001 - the frontend's message names the op
        return [str(exc).splitlines()[0][:200]]
    supported = core.query_model(model, "CPU")
    return sorted({op.get_type_name() for op in model.get_ops() if op.get_friendly_name() not in supported})


def _onnx2tf_unsupported(ops: dict) -> list[str]:
    # onnx2tf has one module per ONNX op it converts.
    return [op for op in ops if importlib.util.find_spec(f"onnx2tf.ops.{op}") is None]


def inspect(path: str) -> dict:
    model = onnx_ir.load_checked(path)
    ops = onnx_ir.op_inventory(model)
    return {"opset": onnx_ir.opset_of(model), "producer": f"{model.producer_name} {model.producer_version}".strip(),
            **onnx_ir.io_signature(model), "ops": ops, "metadata": onnx_ir.read_metadata(model),
            "support": {"onnx": _onnxruntime_unsupported(path), "openvino": _openvino_unsupported(path, ops),
                        "tflite": _onnx2tf_unsupported(ops)}}
