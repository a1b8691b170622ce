"""ONNX frontend: an ONNX file given as the source. Checked, simplified and stamped like a
lowered model; the reference is ONNX Runtime running the original file."""

from __future__ import annotations

from deployer.frontends.base import Frontend
from deployer.spec import ModelSpec

# The reference is ONNX Runtime running the user's own file (the artifact path is the source's).
FRONTEND = Frontend(kind="onnx", lower="deployer.frontends.onnx:lower", reference_runtime="onnxruntime",
                    summary="an ONNX file, checked and simplified as given")


def lower(spec: dict, out_path: str, source_sha256: str, toolchain: dict) -> dict:
    from deployer.ir import onnx_ir

    spec = ModelSpec.from_dict(spec)
    model = onnx_ir.load_checked(spec.source.path)
    info = onnx_ir.finalize(model, out_path, spec, {
        "deployer.source_sha256": source_sha256, "deployer.source_kind": "onnx",
        "deployer.exporter": "none", "deployer.toolchain": toolchain})
    return {**info, "exporter": "none", "exporter_note": "", "source_form": "onnx"}
