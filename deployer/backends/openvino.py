"""OpenVINO backend: IR (.xml + .bin) from the ONNX intermediate form, in fp32, fp16
(compressed weights) or INT8 (NNCF post-training quantization on our calibration feeds;
`exclude` keeps the named ops in float through NNCF's IgnoredScope)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from deployer.backends.base import Backend, int8_options
from deployer.errors import first_line
from deployer.quantize.feeds import calibration_batches
from deployer.quantize.head_float import head_exclusions, head_note
from deployer.spec import ModelSpec

BACKEND = Backend(
    name="openvino", build="deployer.backends.openvino:build", format="openvino-ir",
    precisions=("fp32", "fp16", "int8"), runtimes=("openvino",), options=int8_options(fallback=True),
    layer_outputs="deployer.backends.openvino:layer_outputs", keeps_float=True,
    op_support="deployer.backends.openvino:unsupported_ops", family="openvino", preload=("openvino", "nncf"), graph_nms=True,
    summary="OpenVINO IR (.xml + .bin): fp32, fp16 weights, INT8 through NNCF")


def onnx_names_to_ops(model, onnx_path: str, nodes: list[str]) -> list[str]:
    """OpenVINO op friendly names of the ops that compute the given ONNX nodes (matched by
    node name, which OpenVINO keeps as the friendly name or its prefix, and by the ONNX
    output tensor names)."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    outputs = {n.name: list(n.output) for n in graph.node}
    wanted = set(nodes) | {t for n in nodes for t in outputs.get(n, [])}
    found = []
    for op in model.get_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result"):
            continue
        name = op.get_friendly_name()
        names_here = {name, name.split("/")[0]} | {n for out in op.outputs() for n in out.get_names()}
        # An ONNX Conv becomes '<node>/WithoutBiases' (the Convolution) plus '<node>' (the bias Add).
        if names_here & wanted:
            found.append(op.get_friendly_name())
    return found


AUTO_NAME = re.compile(r"\b([A-Z][A-Za-z0-9]*)_(\d+)\b")


def _stable_names(model, onnx_path: str) -> None:
    """Names OpenVINO makes up (`Reshape_3692`, and names derived from them) number ops with a
    counter of the whole process, so the same model saved by a warm worker that built another
    before gets other names and other bytes. Renumber them in graph order: the same inputs give
    the same IR. Names that come from the ONNX graph are kept."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    kept = {n.name for n in graph.node} | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    numbers: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        token = match.group(0)
        if token in kept:
            return token
        return numbers.setdefault(token, f"{match.group(1)}_d{len(numbers)}")

    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        stable = AUTO_NAME.sub(renumber, name)
        if stable != name:
            op.set_friendly_name(stable)


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    import openvino as ov

    spec_obj = ModelSpec.from_dict(spec)
    model = ov.convert_model(onnx_path)
    notes, quant = [], None
    if precision == "int8":
        import nncf

        feeds = calibration_batches(calibration, spec_obj, options["calibration_images"])
        exclude, decoding = head_exclusions(onnx_path, options)
        ignored = onnx_names_to_ops(model, onnx_path, exclude)
        model = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                              preset=nncf.QuantizationPreset.MIXED,
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
        notes += [f"NNCF INT8 (mixed preset) calibrated on {len(feeds)} images", *head_note(decoding)]
        quant = {"method": "nncf-minmax", "preset": "mixed", "calibration_images": len(feeds),
                 "kept_float": exclude, "head_float": decoding, "ignored_ops": ignored}
    # Labels and preprocessing travel inside the IR, readable with model.get_rt_info().
    model.set_rt_info(json.dumps(spec["labels"]), ["deployer", "labels"])
    model.set_rt_info(json.dumps(spec["preprocess"]), ["deployer", "preprocess"])
    for key, value in _model_info(spec_obj).items():
        model.set_rt_info(value, ["model_info", key])
    _stable_names(model, onnx_path)
    xml = Path(out_dir) / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
    if precision == "fp16":
        notes.append("weights compressed to float16; computed in f32 at run time")
    result = {"path": xml.name, "files": [xml.name, xml.with_suffix(".bin").name], "format": "openvino-ir",
              "notes": notes}
    if quant:
        result["quantization"] = quant
    return result


def _model_info(spec: ModelSpec) -> dict[str, str]:
    """The same in the `model_info` section OpenVINO's Model API reads: labels space-separated,
    mean and scale in 0..255 pixel units, its resize names, and reverse_input_channels for a
    model wanting RGB (Model API's images are BGR, as OpenCV reads them)."""
    pre = spec.preprocess
    return {"labels": " ".join(label.replace(" ", "_") for label in spec.labels),
            "mean_values": " ".join(f"{m * pre.scale:g}" for m in pre.mean),
            "scale_values": " ".join(f"{s * pre.scale:g}" for s in pre.std),
            "reverse_input_channels": str(pre.channel_order == "RGB"),
            "resize_type": "fit_to_window_letterbox" if pre.resize == "letterbox" else "standard",
            "pad_value": f"{pre.pad_value:g}"}


def layer_outputs(artifact: str, wanted: set[str], feeds: list[dict]) -> dict[str, np.ndarray]:
    """Per-layer probe: the IR's tensors that keep an ONNX tensor name, as computed in f32."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(artifact)
    ports = {}
    for op in model.get_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result", "FakeQuantize", "Convert"):
            continue
        for out in op.outputs():
            names = out.get_names() & wanted
            if names:
                ports[next(iter(names))] = out
    model.add_outputs(list(ports.values()))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    lookup = {}
    for out in compiled.outputs:
        for n in out.get_names():
            if n in ports:
                lookup[n] = out
    collected = {n: [] for n in lookup}
    for f in feeds:
        result = request.infer(f)
        for n, port in lookup.items():
            collected[n].append(np.asarray(result[port]).copy())
    return {n: np.stack(v) for n, v in collected.items()}


def unsupported_ops(path: str, ops: dict) -> list[str]:
    """Op types OpenVINO's CPU plugin cannot run (or the frontend's refusal, which names the op)."""
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:  # noqa: BLE001 - the frontend's message names the op
        return [first_line(exc, 200)]
    supported = core.query_model(model, "CPU")
    return sorted({op.get_type_name() for op in model.get_ops() if op.get_friendly_name() not in supported})
