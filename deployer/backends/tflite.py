"""TFLite backend through onnx2tf (NCHW ONNX -> NHWC TensorFlow -> .tflite), offline.

Precisions: fp32, fp16 (float16 weights), dynamic (int8 weights, float activations:
onnx2tf's "dynamic range" file, never called int8 here) and int8 (full-integer: every
op in int8, calibrated on our calibration feeds; int8 inputs and outputs by default, or
float ones with option `io = "float"`).

onnx2tf fetches a sample image file from the internet whenever the input is a 4-D image
(docs/ARCHITECTURE.md, "Toolchain facts"); its download function is replaced by one that returns our own
calibration images, so the conversion never touches the network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from deployer.backends.base import Backend, int8_options
from deployer.options import Option
from deployer.quantize.feeds import calibration_array
from deployer.spec import ModelSpec

# The file onnx2tf writes for each precision (and the flag that asks for it).
ONNX2TF_FILES = {"fp32": "_float32.tflite", "fp16": "_float16.tflite", "dynamic": "_dynamic_range_quant.tflite"}
INT8_FILES = {"int8": "_full_integer_quant.tflite", "float": "_integer_quant.tflite"}

BACKEND = Backend(
    name="tflite", build="deployer.backends.tflite:build", format="tflite",
    precisions=("fp32", "fp16", "dynamic", "int8"), runtimes=("litert",),
    options=int8_options(fallback=False) + (
        Option("io", str, "int8", "full-integer inputs and outputs, or float ones around an int8 body",
               choices=tuple(INT8_FILES), precisions=("int8",)),),
    op_support="deployer.backends.tflite:unsupported_ops",
    summary="TFLite through onnx2tf: fp32, fp16, dynamic range, full-integer INT8")


def _tile_as_concat(src: str, dst: Path) -> None:
    """Copy an ONNX file, rewriting Tile ops that repeat one axis by a constant into Concat.

    onnx2tf 1.29 mis-converts 5-D Tile (tf2onnx writes Keras' nearest upsampling as
    Unsqueeze -> Tile -> Reshape): "Shape must be rank 5 but is rank 1". Concatenating
    the copies along that axis is the same computation and converts cleanly.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(src)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = []
    for node in model.graph.node:
        reps = consts.get(node.input[1]) if node.op_type == "Tile" and len(node.input) > 1 else None
        if reps is not None and int((reps != 1).sum()) == 1:
            axis = int(np.flatnonzero(reps != 1)[0])
            nodes.append(helper.make_node("Concat", [node.input[0]] * int(reps[axis]), list(node.output),
                                          name=f"{node.name or node.output[0]}_as_concat", axis=axis))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))


def convert(onnx_path: str, spec: ModelSpec, calibration: str, workdir: Path, **kwargs) -> Path:
    """Run onnx2tf in-process, offline; returns the folder it wrote."""
    import onnx2tf
    import onnx2tf.onnx2tf as onnx2tf_main
    import onnx2tf.utils.common_functions as common

    samples = calibration_array(calibration, spec, 20, layout="NHWC")
    offline = lambda: samples  # noqa: E731 - stands in for the downloading function
    onnx2tf_main.download_test_image_data = offline
    common.download_test_image_data = offline
    out = workdir / "onnx2tf"
    # onnx2tf writes its onnxsim result back over its input file: give it a private copy
    # so the shared intermediate (and its hash) never changes under the other backends.
    private = workdir / Path(onnx_path).name
    _tile_as_concat(onnx_path, private)
    nhwc = [i.name for i in spec.inputs if i.layout == "NHWC"]
    if nhwc:  # already channels-last (a TensorFlow source): onnx2tf must not transpose it again
        kwargs.setdefault("keep_nwc_or_nhwc_or_ndhwc_input_names", nhwc)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        onnx2tf.convert(input_onnx_file_path=str(private), output_folder_path=str(out),
                        output_signaturedefs=True, copy_onnx_input_output_names_to_tflite=True,
                        non_verbose=True, **kwargs)
    return out


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    spec = ModelSpec.from_dict(spec)
    kwargs, notes, quant = {}, [], None
    suffix = ONNX2TF_FILES.get(precision, "")
    if precision == "dynamic":
        kwargs["output_dynamic_range_quantized_tflite"] = True
        notes.append("dynamic range: int8 weights, float activations (not a full-integer model)")
    elif precision == "int8":
        io = options["io"]
        suffix = INT8_FILES[io]
        count = options["calibration_images"]
        with tempfile.NamedTemporaryFile(suffix=".npy", dir=out_dir, delete=False) as f:
            calib_npy = f.name
        x = calibration_array(calibration, spec, count, layout="NHWC")
        np.save(calib_npy, x)
        # The feeds are already preprocessed: onnx2tf's own normalisation is the identity.
        zeros, ones = np.zeros((1, 1, 1, x.shape[-1]), np.float32), np.ones((1, 1, 1, x.shape[-1]), np.float32)
        kwargs.update(output_integer_quantized_tflite=True, quant_type="per-channel",
                      custom_input_op_name_np_data_path=[[spec.inputs[0].name, calib_npy, zeros, ones]],
                      input_quant_dtype="int8", output_quant_dtype="int8")
        notes.append(f"full-integer INT8 ({io} inputs and outputs), per-channel weights, "
                     f"calibrated on {len(x)} images")
        quant = {"method": "tflite-minmax", "calibration_images": len(x), "io": io, "weights": "int8 per-channel",
                 "activations": "int8", "kept_float": []}
    try:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            folder = convert(onnx_path, spec, calibration, Path(tmp), **kwargs)
            found = sorted(folder.glob(f"*{suffix}"))
            if not found:
                raise RuntimeError(f"onnx2tf wrote no *{suffix} (it wrote: "
                                   f"{', '.join(p.name for p in folder.iterdir())})")
            name = f"{stem}.tflite"
            shutil.copyfile(found[0], Path(out_dir) / name)
    finally:
        if precision == "int8":
            Path(calib_npy).unlink(missing_ok=True)
    result = {"path": name, "files": [name], "format": "tflite", "notes": notes}
    if quant:
        result["quantization"] = quant
    return result


def unsupported_ops(path: str, ops: dict) -> list[str]:
    """ONNX ops onnx2tf has no converter for (it has one module per op it converts)."""
    return [op for op in ops if importlib.util.find_spec(f"onnx2tf.ops.{op}") is None]
