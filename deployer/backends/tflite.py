"""TFLite backend through onnx2tf (NCHW ONNX -> NHWC TensorFlow -> .tflite), offline.

onnx2tf fetches a sample image file from the internet whenever the input is a 4-D image
(DESIGN.md §5); its download function is replaced by one that returns our own
calibration images, so the conversion never touches the network.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from deployer.spec import ModelSpec

ONNX2TF_FILES = {"fp32": "_float32.tflite"}


def calibration_nhwc(calibration: str, spec: ModelSpec, count: int | None = None) -> np.ndarray:
    """The calibration inputs as one NHWC float32 batch, as onnx2tf wants them."""
    x = np.load(calibration)[spec.inputs[0].name]          # (n, 1, ...) in the source layout
    x = x[:count, 0] if count else x[:, 0]
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if spec.inputs[0].layout == "NCHW" else x)


def convert(onnx_path: str, spec: ModelSpec, calibration: str, workdir: Path, **kwargs) -> Path:
    """Run onnx2tf in-process, offline; returns the folder it wrote."""
    import onnx2tf
    import onnx2tf.onnx2tf as onnx2tf_main
    import onnx2tf.utils.common_functions as common

    samples = calibration_nhwc(calibration, spec, 20)
    offline = lambda: samples  # noqa: E731 - stands in for the downloading function
    onnx2tf_main.download_test_image_data = offline
    common.download_test_image_data = offline
    out = workdir / "onnx2tf"
    # onnx2tf writes its onnxsim result back over its input file: give it a private copy
    # so the shared intermediate (and its hash) never changes under the other backends.
    private = workdir / Path(onnx_path).name
    shutil.copyfile(onnx_path, private)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        onnx2tf.convert(input_onnx_file_path=str(private), output_folder_path=str(out),
                        output_signaturedefs=True, copy_onnx_input_output_names_to_tflite=True,
                        non_verbose=True, **kwargs)
    return out


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    spec = ModelSpec.from_dict(spec)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        folder = convert(onnx_path, spec, calibration, Path(tmp))
        found = sorted(folder.glob(f"*{ONNX2TF_FILES[precision]}"))
        if not found:
            raise RuntimeError(f"onnx2tf wrote no *{ONNX2TF_FILES[precision]} (it wrote: "
                               f"{', '.join(p.name for p in folder.iterdir())})")
        name = f"{stem}.tflite"
        shutil.copyfile(found[0], Path(out_dir) / name)
    return {"path": name, "files": [name], "format": "tflite", "notes": []}
