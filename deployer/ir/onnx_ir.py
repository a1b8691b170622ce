"""The ONNX intermediate form: check, shape inference, simplification, metadata, op inventory.

Runs inside worker processes (it imports onnx and onnxsim).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import onnx

from deployer.errors import UserError, first_line


def load_checked(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a corrupt or invalid file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf and checker raise many types
        raise UserError(f"{path}: not a valid ONNX model ({first_line(exc)}); re-export it or check the file "
                        "was copied whole") from None
    return model


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Shape inference then onnxsim; returns the model and a note on what was done."""
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # noqa: BLE001 - onnxsim failing is not fatal: keep the inferred model
        return model, f"onnxsim failed ({type(exc).__name__}: {exc}); kept the unsimplified graph"
    if not ok:
        return model, "onnxsim could not validate its result; kept the unsimplified graph"
    return simplified, "simplified with onnxsim"


def set_metadata(model: onnx.ModelProto, entries: dict[str, object]) -> None:
    """Write entries into metadata_props; non-strings are stored as JSON."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in entries.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if key in existing:
            existing[key].value = text
        else:
            model.metadata_props.add(key=key, value=text)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def io_signature(model: onnx.ModelProto) -> dict:
    """Names, shapes and element types of graph inputs and outputs."""
    init = {i.name for i in model.graph.initializer}

    def describe(values):
        out = []
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out.append({"name": v.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def op_inventory(model: onnx.ModelProto) -> dict[str, int]:
    """Op types used by the main graph and every subgraph, with counts."""
    counts: collections.Counter = collections.Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return dict(sorted(counts.items()))


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed node of the main graph a unique name (`<op>_<index>`): quantizers keep
    nodes in float by name, and a report naming '' helps nobody. Returns how many were named."""
    taken = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    return named


def finalize(model: onnx.ModelProto, out_path: str | Path, spec, extra_metadata: dict) -> dict:
    """Check, infer shapes, simplify, stamp metadata and save; returns a description."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise UserError(f"the lowered ONNX model of '{spec.name}' is invalid: {exc}") from None
    model, note = simplify(model)
    name_nodes(model)
    sig = io_signature(model)
    in_names = [i["name"] for i in sig["inputs"]]
    if in_names != [i.name for i in spec.inputs]:
        raise UserError(f"{spec.path}: field 'inputs': the model's inputs are {in_names}, "
                        f"the spec lists {[i.name for i in spec.inputs]}")
    names = [o["name"] for o in sig["outputs"]]
    if names != list(spec.outputs):
        raise UserError(f"{spec.path}: field 'outputs.names': the model's outputs are {names}, "
                        f"the spec lists {spec.outputs}")
    set_metadata(model, {
        "deployer.labels": spec.labels,
        "deployer.preprocess": spec.to_dict()["preprocess"],
        "deployer.inputs": spec.to_dict()["inputs"],
        "deployer.head": spec.to_dict()["head"],
        **extra_metadata,
    })
    onnx.save(model, str(out_path))
    onnx.checker.check_model(str(out_path))
    return {"path": str(out_path), "opset": opset_of(model), "simplify": note,
            "ops": op_inventory(model), **sig}
