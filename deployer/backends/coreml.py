"""CoreML backend: an ML program (.mlpackage) converted from the source model itself.

coremltools 9 no longer reads ONNX: a torch source is traced and converted, a TensorFlow
source goes through coremltools' TF2 frontend, and an ONNX source is rebuilt as a PyTorch
module by onnx2torch, then traced like a torch source. torch, TensorFlow and coremltools
must not share a process (`ct.convert` of a traced model segfaulted once TensorFlow was
imported: docs/ARCHITECTURE.md, "Toolchain facts"), so for torch and ONNX sources
TensorFlow is blocked before coremltools is imported.

Where coremltools refuses a pattern that has an exact equivalent, the conversion rewrites
it and says so (the manifest's notes, and `deployer.repairs` in the model's metadata):
a per-channel PReLU on a rank-2, -3 or -5 tensor becomes max(x, 0) + alpha * min(x, 0).

Precisions: fp16 (mlprogram computing in float16) and int8 (float16 program with int8
linearly quantized weights, `coremltools.optimize`). The input is an image (ImageType)
carrying the spec's scale and bias; labels and preprocessing go into the model metadata.

NMS in the graph (`[head] nms = "graph"`: the derived end2end spec with `graph_nms`): coremltools
has no converter for ONNX NonMaxSuppression, so the ML program is converted from the
`decoded.onnx` beside the finished model (boxes and class scores before NMS) and outputs what
Vision's object detectors give their NMS: class confidences (N, C) and normalised centre-size
coordinates (N, 4). The artifact is a Pipeline of that program and a `NonMaximumSuppression`
model (per-class PickTop) whose outputs, `confidence` and `coordinates`, are what Vision turns
into VNRecognizedObjectObservations. The int8 artifact quantizes the program inside it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import uuid
from pathlib import Path

from deployer.backends.base import Backend, repair_notes, write_repairs
from deployer.errors import StageError, UserError
from deployer.spec import ModelSpec

# Vision reads a detector's results from outputs with these names: the NMS stage's.
NMS_OUTPUTS = ("confidence", "coordinates")
# The ML program's outputs, the NMS stage's inputs: names of their own, so each feature of the
# pipeline has one producer.
PROGRAM_OUTPUTS = ("raw_confidence", "raw_coordinates")
DECODED_ONNX = "decoded.onnx"


class _SourceFamilyBackend(Backend):
    """Runs in the source framework's own worker (the model is converted from the source, not
    from ONNX); an ONNX source is converted through PyTorch (onnx2torch), in a torch worker."""

    def family_for(self, source_kind: str) -> str:
        return "torch" if source_kind == "onnx" else super().family_for(source_kind)


BACKEND = _SourceFamilyBackend(
    name="coreml", build="deployer.backends.coreml:build", format="mlpackage", precisions=("fp16", "int8"),
    runtimes=("coreml",), family="{source}", prebuild="deployer.backends.coreml:convert", graph_nms=True,
    graph_nms_best_class=True,
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


def _traced(module, spec: ModelSpec):
    import torch

    example = tuple(torch.zeros(i.shape) for i in spec.inputs)
    try:
        module = module.eval()
    except NotImplementedError:   # an ExportedProgram's module: captured for inference already
        pass
    with torch.no_grad():
        return torch.jit.trace(module, example)


def _onnx_as_torch(onnx_path: str):
    """The ONNX graph rebuilt as a PyTorch module by onnx2torch (bridge/onnx_torch.py); an op
    it cannot rebuild fails this conversion (CoreML only) with the op and node named."""
    from deployer.bridge.onnx_torch import rebuild

    return rebuild(onnx_path, "coreml: coremltools 9 does not read ONNX, and",
                   "so this ONNX source has no CoreML artifact; give the model's PyTorch or TensorFlow source "
                   "instead (CoreML converts from it)")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _graph_nms(spec: ModelSpec) -> bool:
    return bool(spec.head.params.get("graph_nms"))


def _decoded_onnx(onnx_path: str) -> Path:
    path = Path(onnx_path).parent / DECODED_ONNX
    if not path.is_file():
        raise StageError(f"coreml: NMS in the graph needs {path} (the model's boxes and scores before NMS, written "
                         f"beside {Path(onnx_path).name}): coremltools converts no ONNX NonMaxSuppression, so the "
                         "CoreML artifact is converted from the decoded model and gets Core ML's own NMS stage")
    return path


def _vision_outputs(module, decoded: Path, spec: ModelSpec):
    """`module` (decoded.onnx: boxes (1, N, 4) xyxy pixels, scores (1, N, C)) giving what
    Core ML's NonMaximumSuppression takes: confidence (N, C) and coordinates (N, 4) as
    centre x, centre y, width, height in 0..1 of the input (NonMaximumSuppression.proto;
    Vision scales them to the image it was given)."""
    import onnx
    import torch

    names = [o.name for o in onnx.load(str(decoded), load_external_data=False).graph.output]
    if not {"boxes", "scores"} <= set(names):
        raise StageError(f"coreml: {decoded} has outputs {names}; NMS in the graph needs 'boxes' and 'scores'")
    inp = spec.inputs[0]
    scale = torch.tensor([1.0 / inp.width, 1.0 / inp.height] * 2)

    class VisionOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoded = module
            self.register_buffer("scale", scale)

        def forward(self, *inputs):
            out = self.decoded(*inputs)
            out = out if isinstance(out, (tuple, list)) else (out,)
            if len(out) != len(names):   # onnx2torch returns one value per ONNX output, in order
                raise StageError(f"coreml: the module rebuilt from {decoded} returns {len(out)} values for the "
                                 f"{len(names)} outputs {names}")
            boxes, scores = out[names.index("boxes")][0], out[names.index("scores")][0]
            centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
            return scores, torch.cat([centre, size], 1) * self.scale

    return VisionOutputs()


@contextlib.contextmanager
def _source_model(spec: ModelSpec, onnx_path: str, repairs: list):
    """The model in the form coremltools converts, alive until the conversion is done: a
    function of a loaded SavedModel only references its variables, which are deleted with
    the loaded object ("Called a function referencing variables which have been deleted")."""
    kind = spec.source.kind
    if kind == "torch":
        from deployer.frontends.torch import _as_callable, load

        model, _ = load(spec)
        yield _traced(_as_callable(model), spec)
    elif kind == "tensorflow":
        from deployer.frontends.tensorflow import traced

        forward, _, _ = traced(spec)   # holds the loaded SavedModel while it is referenced
        yield [forward.get_concrete_function()]  # a list: the TF2 frontend's format
    elif kind == "onnx" and _graph_nms(spec):
        decoded = _decoded_onnx(onnx_path)
        module = _vision_outputs(_onnx_as_torch(str(decoded)), decoded, spec)
        repairs.append({"kind": "onnx_source", "note": f"converted from a PyTorch module rebuilt from {DECODED_ONNX} "
                                                       f"(boxes and scores before NMS) by onnx2torch "
                                                       f"{_version('onnx2torch')}"})
        yield _traced(module, spec)
    elif kind == "onnx":
        module = _onnx_as_torch(onnx_path)
        repairs.append({"kind": "onnx_source", "note": f"converted from a PyTorch module rebuilt from the ONNX graph "
                                                       f"by onnx2torch {_version('onnx2torch')}"})
        yield _traced(module, spec)
    else:
        raise UserError(f"{spec.path}: the CoreML backend converts torch, tensorflow and onnx sources, "
                        f"not '{kind}'")


@contextlib.contextmanager
def _prelu_repair(repairs: list):
    """coremltools 9 refuses a per-channel PReLU on rank-3 and rank-5 tensors (a rank-2 one,
    after a fully connected layer, is made rank 3 first): "prelu op: rank 3 ... only
    supported when all the values of alpha are same". max(x, 0) + alpha * min(x, 0), alpha
    along axis 1, is the same computation: registered as the `prelu` converter for the
    conversion, the original converter back afterwards."""
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    original = _TORCH_OPS_REGISTRY.get_func("prelu")

    def prelu(context, node):
        x, alpha = _get_inputs(context, node, expected=2)
        values = None if alpha.val is None else np.asarray(alpha.val, np.float32).reshape(-1)
        if x.rank == 4 or x.rank < 2 or values is None or np.ptp(values) <= 1e-5:
            return original(context, node)
        shaped = values.reshape((-1,) + (1,) * (x.rank - 2)).astype(np.float32)
        negative = mb.mul(x=mb.minimum(x=x, y=0.0), y=shaped)
        context.add(mb.add(x=mb.maximum(x=x, y=0.0), y=negative, name=node.name))
        layer = getattr(node, "model_hierarchy", None) or node.name   # the module path where traced
        repairs.append({"kind": "prelu", "layer": layer, "rank": x.rank,
                        "note": f"per-channel PReLU on a rank-{x.rank} tensor (layer '{layer}') rewritten as "
                                "max(x, 0) + alpha * min(x, 0), which coremltools 9 converts (it refuses the PReLU)"})

    register_torch_op(prelu, override=True)
    try:
        yield
    finally:
        register_torch_op(original, override=True)


def _block_tensorflow(spec: ModelSpec) -> None:
    if spec.source.kind in ("torch", "onnx"):
        sys.modules.setdefault("tensorflow", None)  # coremltools imports TF when present; torch + TF segfaults


def convert(onnx_path: str, spec: dict, options: dict, calibration: str, out_dir: str) -> dict:
    """Prebuild stage: the source model as a float16 ML program with deployer's metadata,
    which every CoreML artifact of the build starts from (the int8 one quantizes its weights)."""
    model_spec = ModelSpec.from_dict(spec)
    graph_nms = _graph_nms(model_spec)
    if graph_nms:
        if model_spec.source.kind != "onnx":
            raise StageError(f"coreml: NMS in the graph is built from the ONNX files deployer writes for it, not from "
                             f"a '{model_spec.source.kind}' source")
        _decoded_onnx(onnx_path)   # before the imports: a missing file fails in a second, not after them
    _block_tensorflow(model_spec)
    import coremltools as ct
    import numpy as np

    repairs: list[dict] = []
    image, image_info = _image_input(ct, model_spec)
    torch_source = model_spec.source.kind != "tensorflow"   # torch, or ONNX rebuilt in torch
    # Core ML's NonMaximumSuppression takes float32 or double arrays only (its validator), where an
    # ML program computing in float16 returns float16 unless told otherwise.
    outputs = ([ct.TensorType(name=n, dtype=np.float32) for n in PROGRAM_OUTPUTS] if graph_nms
               else [ct.TensorType(name=n) for n in model_spec.outputs])
    with (_source_model(model_spec, onnx_path, repairs) as source,
          _prelu_repair(repairs) if torch_source else contextlib.nullcontext()):
        try:
            mlmodel = ct.convert(source, source="pytorch" if torch_source else "tensorflow", inputs=[image],
                                 # TF graphs name their outputs Identity, Identity_1...: renamed below.
                                 outputs=outputs if torch_source else None,
                                 convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                                 minimum_deployment_target=ct.target.iOS16)
        except NotImplementedError as exc:
            # coremltools names the op on its first line, then dumps the whole node: keep the op
            # and the node's name.
            lines = str(exc).splitlines()
            node = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("name:")), "")
            raise StageError(f"coremltools cannot convert this model: {lines[0].strip() if lines else exc}"
                             + (f" (node {node})" if node else "")) from exc
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
    if repairs:
        meta["deployer.repairs"] = json.dumps(repairs)
    if graph_nms:
        head = model_spec.head
        meta["deployer.nms"] = json.dumps({"stage": "NonMaximumSuppression", "per_class": True,
                                           "iou_threshold": head.iou_threshold,
                                           "confidence_threshold": head.score_threshold,
                                           "max_detections": head.max_detections})
    mlmodel.save(str(Path(out_dir) / "base.mlpackage"))
    write_repairs(out_dir, repairs)
    return {"image_input": image_info, "repairs": repairs}


def _nms_pipeline(ct, program, spec: ModelSpec):
    """[the ML program, Core ML's NonMaximumSuppression] as one Pipeline model, the program's
    inputs and metadata its own. The NMS stage keeps at most head.max_detections boxes (a
    range on its outputs' first dimension, from 0: no zero padding) and suppresses per class
    like ONNX NonMaxSuppression, though each box under its best class only; its inputs are the
    program's output descriptions as they are: the pipeline validator wants each stage's inputs
    equivalent to the features that feed them."""
    proto = program.get_spec()
    produced = {o.name: o for o in proto.description.output}
    confidence, coordinates = (produced[n] for n in PROGRAM_OUTPUTS)
    array_types = ct.proto.FeatureTypes_pb2.ArrayFeatureType
    if {f.type.multiArrayType.dataType for f in (confidence, coordinates)} != {array_types.FLOAT32}:
        raise StageError("coreml: the ML program's confidence and coordinates must be float32 arrays for Core ML's "
                         "NonMaximumSuppression (it refuses float16)")
    classes = int(confidence.type.multiArrayType.shape[-1])
    head = spec.head
    nms = ct.proto.Model_pb2.Model()
    nms.specificationVersion = proto.specificationVersion
    for feature, name in zip((confidence, coordinates), NMS_OUTPUTS):
        nms.description.input.add().CopyFrom(feature)
        out = nms.description.output.add()
        out.CopyFrom(feature)
        out.name = name
        array = out.type.multiArrayType
        width = int(array.shape[-1])
        del array.shape[:]
        rows, cols = array.shapeRange.sizeRanges.add(), array.shapeRange.sizeRanges.add()
        rows.lowerBound, rows.upperBound = 0, head.max_detections
        cols.lowerBound = cols.upperBound = width
    params = nms.nonMaximumSuppression
    params.pickTop.perClass = True
    params.iouThreshold = head.iou_threshold
    params.confidenceThreshold = head.score_threshold
    params.confidenceInputFeatureName, params.coordinatesInputFeatureName = PROGRAM_OUTPUTS
    params.confidenceOutputFeatureName, params.coordinatesOutputFeatureName = NMS_OUTPUTS
    # Vision names each observation's labels from these; Core ML wants one per confidence column.
    labels = spec.labels if len(spec.labels) == classes else [str(i) for i in range(classes)]
    params.stringClassLabels.vector.extend(labels)

    pipeline = ct.models.pipeline.Pipeline(input_features=[(i.name, ct.models.datatypes.Array(*i.shape[1:]))
                                                           for i in spec.inputs],
                                           output_features=list(NMS_OUTPUTS))
    pipeline.add_model(proto)
    pipeline.add_model(nms)
    described = pipeline.spec
    described.specificationVersion = proto.specificationVersion
    described.description.CopyFrom(proto.description)   # the image input, metadata, description
    del described.description.output[:]
    described.description.output.extend(nms.description.output)
    # A pipeline holding an ML program is a package: the program's weights are copied into it.
    return ct.models.MLModel(described, weights_dir=program.weights_dir, skip_model_load=True)


def _nms_note(spec: ModelSpec) -> str:
    head = spec.head
    return (f"NMS pipeline stage: Vision's NonMaximumSuppression (per-class PickTop, IoU > {head.iou_threshold:g} "
            f"suppressed, confidence >= {head.score_threshold:g}, at most {head.max_detections} boxes) after the "
            f"ML program converted from {DECODED_ONNX}; outputs 'confidence' (M, C) and 'coordinates' (M, 4, "
            "normalised centre x, centre y, width, height); each box counts under its best class only")


def _stable_package_ids(package: Path) -> None:
    """An .mlpackage's Manifest.json names its items by random UUIDs, so two saves of the same
    model differ. Name each by a UUID derived from its path instead (what Core ML reads is the
    mapping, not the values): the same model gives the same bytes."""
    manifest = package / "Manifest.json"
    doc = json.loads(manifest.read_text())
    entries = doc.get("itemInfoEntries", {})
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"deployer:mlpackage/{item.get('path', old)}"))
           for old, item in entries.items()}
    doc["itemInfoEntries"] = {ids[old]: item for old, item in entries.items()}
    if doc.get("rootModelIdentifier") in ids:
        doc["rootModelIdentifier"] = ids[doc["rootModelIdentifier"]]
    manifest.write_text(json.dumps(doc, indent=4, sort_keys=True) + "\n")


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    model_spec = ModelSpec.from_dict(spec)
    _block_tensorflow(model_spec)
    graph_nms = _graph_nms(model_spec)
    base = Path(prebuilt) / "base.mlpackage"
    path = Path(out_dir) / f"{stem}.mlpackage"
    notes = ["ML program computing in float16", *repair_notes(prebuilt)]
    quant = None
    if precision == "int8" or graph_nms:
        import coremltools as ct

        mlmodel = ct.models.MLModel(str(base), skip_model_load=True)
    if precision == "int8":
        import coremltools.optimize as cto

        config = cto.coreml.OptimizationConfig(
            global_config=cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
        mlmodel = cto.coreml.linear_quantize_weights(mlmodel, config)
        notes.append("int8 linear (symmetric, per-channel) weights; activations in float16")
        quant = {"method": "coremltools linear_quantize_weights", "weights": "int8 symmetric per-channel",
                 "activations": "float16", "kept_float": []}
    if graph_nms:
        _nms_pipeline(ct, mlmodel, model_spec).save(str(path))
        notes.append(_nms_note(model_spec))
    elif precision == "int8":
        mlmodel.save(str(path))
    else:
        shutil.copytree(base, path)
    _stable_package_ids(path)
    files = sorted(str(p.relative_to(out_dir)) for p in path.rglob("*") if p.is_file())
    result = {"path": path.name, "files": files, "format": "mlpackage", "notes": notes}
    if quant:
        result["quantization"] = quant
    return result
