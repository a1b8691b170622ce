"""Backends: one module per artifact format, each with a worker stage

    build(onnx_path, spec, precision, options, out_dir, stem, calibration) -> dict

that writes the artifact's files into `out_dir` and returns {"path": primary file name,
"files": [names], "format": str, "notes": [str]}. `calibration` is an .npz of
preprocessed calibration inputs in the source layout. A profile may also name a backend
as 'package.module:function' with the same signature (a custom NPU compiler, say).
"""

from __future__ import annotations

from deployer.errors import UserError

BUILDERS = {
    "onnx": "deployer.backends.onnx:build",
    "openvino": "deployer.backends.openvino:build",
    "tflite": "deployer.backends.tflite:build",
    "tfjs": "deployer.backends.tfjs:build",
    "coreml": "deployer.backends.coreml:build",
}

# Which precisions each backend builds today.
PRECISIONS = {
    "onnx": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
    "tflite": ("fp32", "fp16", "dynamic", "int8"),
    "tfjs": ("fp32", "fp16", "dynamic"),
    "coreml": ("fp16", "int8"),
}


def builder_for(backend: str, precision: str) -> str:
    if ":" in backend:
        return backend
    if backend not in BUILDERS:
        raise UserError(f"backend '{backend}' is not available yet (available: {', '.join(BUILDERS)})")
    if precision not in PRECISIONS[backend]:
        raise UserError(f"backend '{backend}' cannot build precision '{precision}' "
                        f"(it builds: {', '.join(PRECISIONS[backend])})")
    return BUILDERS[backend]
