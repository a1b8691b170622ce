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


# CPU features that change which kernels a runtime picks (and so the last bits of its
# outputs): the parity figures hold for a CPU that has them.
SIMD_FLAGS = ("sse", "ssse3", "avx", "fma", "f16c", "amx", "vnni", "bf16", "asimd", "neon", "sve", "dotprod",
              "i8mm", "fphp", "asimdhp")


def host() -> dict:
    """Where the parity was measured: platform, CPU model and its SIMD flags, Python."""
    import os
    import platform

    cpu, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:   # not Linux: the platform's own name for the processor
        info = ""
    for line in info.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "Hardware") and not cpu:
            cpu = value
        if key in ("flags", "Features") and not flags:
            flags = sorted(f for f in value.split() if f.startswith(SIMD_FLAGS))
    cpu = cpu or platform.processor() or platform.machine()
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "cpu_flags": flags, "python": platform.python_version()}
