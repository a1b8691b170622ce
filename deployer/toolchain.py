"""Versions of the installed toolchain, read from package metadata (no framework import)."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("deployer", "numpy", "torch", "tensorflow", "onnx", "onnxruntime", "onnxsim", "onnxscript",
            "onnx2tf", "tf2onnx", "coremltools", "openvino", "nncf", "ai-edge-litert", "tflite-micro",
            "tensorflowjs", "onnx2torch")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
