"""OpenVINO backend: IR (.xml + .bin) converted from the ONNX intermediate form."""

from __future__ import annotations

import json
from pathlib import Path


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    import openvino as ov

    model = ov.convert_model(onnx_path)
    # Labels and preprocessing travel inside the IR, readable with model.get_rt_info().
    model.set_rt_info(json.dumps(spec["labels"]), ["deployer", "labels"])
    model.set_rt_info(json.dumps(spec["preprocess"]), ["deployer", "preprocess"])
    xml = Path(out_dir) / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return {"path": xml.name, "files": [xml.name, xml.with_suffix(".bin").name], "format": "openvino-ir",
            "notes": []}
