"""ONNX backend: the web artifact for ONNX Runtime Web, straight from the intermediate form."""

from __future__ import annotations

import shutil
from pathlib import Path


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    name = f"{stem}.onnx"
    shutil.copyfile(onnx_path, Path(out_dir) / name)
    return {"path": name, "files": [name], "format": "onnx", "notes": []}
