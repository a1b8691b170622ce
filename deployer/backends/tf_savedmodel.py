"""TensorFlow backend (target `tf`): the model as a TensorFlow SavedModel with a
`serving_default` signature whose inputs and outputs carry the spec's names, for teams that
serve or fine-tune in TensorFlow. It is the SavedModel of the shared onnx2tf conversion
(`tflite:convert_float`, its inputs channels-last as TensorFlow's convolutions want), and a
spec beside it (`<stem>.toml`, bridge/spec_file.py) makes it a source of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from deployer.backends.base import Backend, repair_notes
from deployer.bridge import spec_file
from deployer.spec import ModelSpec

BACKEND = Backend(
    name="tf", build="deployer.backends.tf_savedmodel:build", format="saved_model", precisions=("fp32",),
    runtimes=("tensorflow",), family="tensorflow", prebuild="deployer.backends.tflite:convert_float",
    preload=("tensorflow",), summary="TensorFlow SavedModel (serving_default, the spec's tensor names) + its spec")


def _signature_inputs(saved_model: Path, spec: ModelSpec) -> list[dict]:
    """The SavedModel's inputs as spec entries: the same names, its own shapes and layout."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    given = fn.structured_input_signature[1]
    inputs = []
    for inp in spec.inputs:
        shape = [int(d) if d is not None else 1 for d in given[inp.name].shape]
        nhwc = len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3)
        inputs.append({"name": inp.name, "shape": shape, "layout": "NHWC" if nhwc else inp.layout})
    return inputs


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    model_spec = ModelSpec.from_dict(spec)
    folder = f"{stem}_saved_model"
    shutil.copytree(Path(prebuilt) / "saved_model", Path(out_dir) / folder)
    inputs = _signature_inputs(Path(out_dir) / folder, model_spec)
    name = f"{model_spec.name}_tf"
    written = spec_file.write(model_spec, name, {"kind": "tensorflow", "path": folder}, inputs, out_dir, stem)
    files = sorted(str(p.relative_to(out_dir)) for p in (Path(out_dir) / folder).rglob("*") if p.is_file())
    return {"path": folder, "files": [*files, *written], "format": "saved_model",
            "notes": [f"serving_default signature; inputs {', '.join(i['layout'] for i in inputs)}; its spec: "
                      f"{stem}.toml", *repair_notes(prebuilt)]}
