"""Worker stage for `deployer inspect`: an ONNX model's interface, ops and backend support
(each backend that declares an `op_support` check answers for itself)."""

from __future__ import annotations

from deployer import backends
from deployer.ir import onnx_ir
from deployer.registry import resolve


def inspect(path: str) -> dict:
    model = onnx_ir.load_checked(path)
    ops = onnx_ir.op_inventory(model)
    support = {}
    for backend in backends.registry().values():
        if backend.op_support:
            support[backend.name] = resolve(backend.op_support)(path, ops)
    return {"opset": onnx_ir.opset_of(model), "producer": f"{model.producer_name} {model.producer_version}".strip(),
            **onnx_ir.io_signature(model), "ops": ops, "metadata": onnx_ir.read_metadata(model), "support": support}
