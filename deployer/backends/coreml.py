"""CoreML backend: an ML program (.mlpackage) converted from the source model itself.

coremltools 9 no longer reads ONNX: a torch source is traced and converted, a TensorFlow
source goes through coremltools' TF2 frontend. torch, TensorFlow and coremltools must not
share a process (`ct.convert` of a traced model segfaulted once TensorFlow was imported:
docs/ARCHITECTURE.md, "Toolchain facts"), so for torch sources TensorFlow is blocked before
coremltools is imported.

Precisions: fp16 (mlprogram computing in float16) and int8 (float16 program with int8
linearly quantized weights, `coremltools.optimize`). The input is an image (ImageType)
carrying the spec's scale and bias; labels and preprocessing go into the model metadata.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from deployer.backends.base import Backend
from deployer.errors import UserError
from deployer.spec import ModelSpec

BACKEND = Backend(
    name="coreml", build="deployer.backends.coreml:build", format="mlpackage", precisions=("fp16", "int8"),
    # In the source framework's own worker: the model is converted from the source, not from ONNX.
    runtimes=("coreml",), family="{source}", prebuild="deployer.backends.coreml:convert",
    summary="CoreML ML program (.mlpackage) converted from the source model: fp16, int8 weights")


def _image_input(ct, spec: ModelSpec):
    inp, pre = spec.inputs[0], spec.preprocess
    if len(set(pre.std)) != 1:
        # CoreML image preprocessing has one scale for all channels: fall back to a tensor input.
        return ct.TensorType(name=inp.name, shape=inp.shape), None
    scale = 1.0 / (pre.scale * pre.std[0])
    bias = [-m / s for m, s in zip(pre.mean, pre.std)]
    layout = ct.colorlayout.RGB if pre.channel_order == "RGB" else ct.colorlayout.BGR
    return (ct.ImageType(name=inp.name, shape=inp.shape, scale=scale, bias=bias, color_layout=layout,
                         channel_first=inp.layout == "NCHW"),
            {"scale": scale, "bias": bias, "color_layout": pre.channel_order})


def _source_model(spec: ModelSpec):
    if spec.source.kind == "torch":
        import torch

        from deployer.frontends.torch import _as_callable, load

        model, _ = load(spec)
        example = tuple(torch.zeros(i.shape) for i in spec.inputs)
        with torch.no_grad():
            return torch.jit.trace(_as_callable(model).eval(), example)
    if spec.source.kind == "tensorflow":
        from deployer.frontends.tensorflow import traced

        forward, _, _ = traced(spec)
        return [forward.get_concrete_function()]  # a list: the TF2 frontend's format
    raise UserError(f"{spec.path}: the CoreML backend converts torch and tensorflow sources, not '{spec.source.kind}' "
                    "(coremltools 9 does not read ONNX)")


def _block_tensorflow(spec: ModelSpec) -> None:
    if spec.source.kind == "torch":
        sys.modules.setdefault("tensorflow", None)  # coremltools imports TF when present; torch + TF segfaults


def convert(onnx_path: str, spec: dict, options: dict, calibration: str, out_dir: str) -> dict:
    """Prebuild stage: the source model as a float16 ML program with deployer's metadata,
    which every CoreML artifact of the build starts from (the int8 one quantizes its weights)."""
    model_spec = ModelSpec.from_dict(spec)
    _block_tensorflow(model_spec)
    import coremltools as ct

    source = _source_model(model_spec)
    image, image_info = _image_input(ct, model_spec)
    torch_source = model_spec.source.kind == "torch"
    mlmodel = ct.convert(source, source="pytorch" if torch_source else "tensorflow", inputs=[image],
                         # TF graphs name their outputs Identity, Identity_1...: renamed below.
                         outputs=[ct.TensorType(name=n) for n in model_spec.outputs] if torch_source else None,
                         convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                         minimum_deployment_target=ct.target.iOS16)
    if not torch_source:
        proto = mlmodel.get_spec()
        for out, name in zip(list(proto.description.output), model_spec.outputs):
            if out.name != name:
                ct.utils.rename_feature(proto, out.name, name)
        mlmodel = ct.models.MLModel(proto, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    mlmodel.short_description = f"{model_spec.name}: object detector compiled by deployer"
    meta = mlmodel.user_defined_metadata
    meta["deployer.labels"] = json.dumps(model_spec.labels)
    meta["deployer.preprocess"] = json.dumps(spec["preprocess"])
    meta["deployer.head"] = json.dumps(spec["head"])
    if image_info:
        meta["deployer.image_input"] = json.dumps(image_info)
    mlmodel.save(str(Path(out_dir) / "base.mlpackage"))
    return {"image_input": image_info}


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    model_spec = ModelSpec.from_dict(spec)
    _block_tensorflow(model_spec)
    base = Path(prebuilt) / "base.mlpackage"
    path = Path(out_dir) / f"{stem}.mlpackage"
    notes = ["ML program computing in float16"]
    quant = None
    if precision == "int8":
        import coremltools as ct
        import coremltools.optimize as cto

        config = cto.coreml.OptimizationConfig(
            global_config=cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
        mlmodel = cto.coreml.linear_quantize_weights(ct.models.MLModel(str(base), skip_model_load=True), config)
        mlmodel.save(str(path))
        notes.append("int8 linear (symmetric, per-channel) weights; activations in float16")
        quant = {"method": "coremltools linear_quantize_weights", "weights": "int8 symmetric per-channel",
                 "activations": "float16", "kept_float": []}
    else:
        shutil.copytree(base, path)
    files = sorted(str(p.relative_to(out_dir)) for p in path.rglob("*") if p.is_file())
    result = {"path": path.name, "files": files, "format": "mlpackage", "notes": notes}
    if quant:
        result["quantization"] = quant
    return result
