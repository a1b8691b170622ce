"""ONNX graphs as onnx2torch can rebuild them. onnx2torch 1.5 knows ops up to opset 17 and
refuses some attributes; the exporters write opset 18 and `Reshape(allowzero=1)`. Where the
newer form means exactly the older one, it is written the older way:
- opset 18 -> 17 when every op whose definition changed at 18 has an equal opset-17 form:
  Resize using none of 18's additions (antialias, axes, keep_aspect_ratio_policy at their
  defaults); Split (18's `num_outputs` becomes the sizes it implies, from the inferred shape);
  the Reduce ops with constant `axes` (an input at 18, an attribute before); Pad without `axes`;
- `allowzero=1` dropped from a Reshape whose shape is a constant without zeros (the flag only
  changes what a 0 in the shape means).
Anything else is left as it is, and onnx2torch names what it lacks (`rebuild`)."""

from __future__ import annotations

import numpy as np

from deployer.errors import StageError

RESIZE_18_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}
REDUCE_18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
             "ReduceLogSumExp", "ReduceSumSquare"}


def _constants(model) -> dict:
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _shapes(model) -> dict[str, list]:
    """Inferred static shapes by tensor name (dims unknown as None)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def _as_17(node, consts: dict, shapes: dict):
    """A function rewriting `node` (changed at opset 18) to its equal opset-17 form, or None."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Resize":
        if "axes" in attrs or any(attrs.get(k, v) != v for k, v in RESIZE_18_DEFAULTS.items()):
            return None
        return lambda model: [node.attribute.remove(a) for a in list(node.attribute) if a.name in RESIZE_18_DEFAULTS]
    if node.op_type == "Split":
        if "num_outputs" not in attrs:
            return lambda model: None      # sizes given as an input: the opset-13 form already
        shape = shapes.get(node.input[0])
        axis = attrs.get("axis", 0)
        if not shape or shape[axis] is None:
            return None
        n, size = attrs["num_outputs"], shape[axis]
        chunk = -(-size // n)   # 18: equal chunks of ceil(size / n), the last one smaller
        sizes = [min(chunk, size - i * chunk) for i in range(n)]

        def rewrite(model):
            for a in [a for a in node.attribute if a.name == "num_outputs"]:
                node.attribute.remove(a)
            name = f"{node.name or node.output[0]}_split_sizes"
            model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
            node.input[1:] = [name]
        return rewrite if all(s > 0 for s in sizes) else None
    if node.op_type in REDUCE_18:
        if attrs.get("noop_with_empty_axes", 0):
            return None
        axes = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if len(node.input) > 1 and node.input[1] and axes is None:
            return None

        def rewrite(model):
            if axes is not None:
                node.attribute.append(helper.make_attribute("axes", [int(a) for a in np.ravel(axes)]))
            del node.input[1:]
            for a in [a for a in node.attribute if a.name == "noop_with_empty_axes"]:
                node.attribute.remove(a)
        return rewrite
    if node.op_type == "Pad" and (len(node.input) < 4 or not node.input[3]):
        return lambda model: None
    return None


def older_forms(model) -> list[str]:
    """Rewrite `model` in place as above; what was rewritten, for the notes."""
    import onnx
    from onnx import helper

    done = []
    consts = _constants(model)
    for node in model.graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1:
            attrs = {a.name: a for a in node.attribute}
            shape = consts.get(node.input[1])
            if "allowzero" in attrs and helper.get_attribute_value(attrs["allowzero"]) == 1 \
                    and shape is not None and not np.any(np.asarray(shape) == 0):
                node.attribute.remove(attrs["allowzero"])
                done.append(f"Reshape '{node.name}': allowzero dropped (its shape has no 0)")
    default = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if default is not None and default.version == 18:
        changed = [n for n in model.graph.node if n.domain in ("", "ai.onnx")
                   and onnx.defs.get_schema(n.op_type, 18, "").since_version == 18]
        needs_shapes = any(n.op_type == "Split" for n in changed)
        shapes = _shapes(model) if needs_shapes else {}
        rewrites = [_as_17(n, consts, shapes) for n in changed]
        if all(r is not None for r in rewrites):
            for rewrite in rewrites:
                rewrite(model)
            default.version = 17
            kinds = sorted({n.op_type for n in changed})
            done.append(f"opset 18 written as 17 ({len(changed)} node(s) of {', '.join(kinds) or 'no op'} "
                        "changed at 18, in their equal opset-17 form)")
    return done


def _outputs_of_their_own(model) -> None:
    """Graph outputs made by a node with several outputs (a Split's chunk) pass through an
    Identity: onnx2torch returns such an output as the node's whole tuple otherwise."""
    from onnx import helper

    wanted = {o.name for o in model.graph.output}
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if len([o for o in node.output if o]) < 2:
            continue
        for i, name in enumerate(node.output):
            if name in wanted:   # the Identity right after its producer: the graph stays in order
                node.output[i] = f"{name}__deployer_own"
                nodes.append(helper.make_node("Identity", [node.output[i]], [name], name=f"{name}__identity"))
    if len(nodes) > len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def rebuild(onnx_path: str, purpose: str, advice: str):
    """The ONNX graph rebuilt as a PyTorch module by onnx2torch, in the older forms above; an
    op it cannot rebuild fails with the op and node named, `purpose` saying what needed it and
    `advice` what to do instead."""
    import onnx
    import onnx2torch
    from onnx2torch.node_converters.registry import get_converter

    model = onnx.load(onnx_path)
    older_forms(model)
    _outputs_of_their_own(model)
    opsets = {o.domain: o.version for o in model.opset_import}
    missing = []
    for node in model.graph.node:
        try:
            get_converter(domain=node.domain, operation_type=node.op_type, version=opsets.get(node.domain, 1))
        except NotImplementedError:
            missing.append(f"'{node.op_type}' (node '{node.name}', opset {opsets.get(node.domain, 1)})")
    if missing:
        raise StageError(f"{purpose} onnx2torch {_version('onnx2torch')} cannot rebuild ONNX op "
                         f"{', '.join(missing[:5])} as PyTorch; {advice}")
    return onnx2torch.convert(model)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def exportable(module):
    """onnx2torch's Slice, Reshape, Resize and Tile read indices, shapes, scales and repeats
    from tensors at run time,
    which torch.export cannot capture (data-dependent values). Where those come from constants
    of the graph, they become Python constants of equivalent modules: the same computation,
    exportable as an ExportedProgram. Returns how many were rewritten."""
    import torch
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode
    from onnx2torch.node_converters.slice import OnnxSlice, _do_slice, _get_slices
    from onnx2torch.node_converters.tile import OnnxTile

    class FrozenSlice(torch.nn.Module):
        def __init__(self, starts, ends, axes, steps):
            super().__init__()
            self.flip, self.pos, self.neg = _get_slices(starts, ends, axes, steps)

        def forward(self, x):
            return _do_slice(x, self.flip, self.pos, self.neg)

    class FrozenReshape(torch.nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.shape = [int(d) for d in shape]

        def forward(self, x):
            # ONNX: a 0 keeps the input's dimension (allowzero is gone where this applies).
            return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])

    class FrozenResize(torch.nn.Module):
        def __init__(self, inner, scales, sizes):
            super().__init__()
            self.mode, self.align_corners = inner.onnx_mode, inner.align_corners
            self.scales = [float(v) for v in scales[2:]] if scales is not None and len(scales) else None
            self.sizes = [int(v) for v in sizes[2:]] if sizes is not None and len(sizes) else None

        def forward(self, x):
            return torch.nn.functional.interpolate(
                x, size=self.sizes, scale_factor=None if self.sizes else self.scales,
                mode=_onnx_mode_to_torch_mode(self.mode, x.dim() - 2), align_corners=self.align_corners)

    class FrozenTile(torch.nn.Module):
        def __init__(self, repeats):
            super().__init__()
            self.repeats = [int(r) for r in repeats]

        def forward(self, x):
            return x.repeat(*self.repeats)   # ONNX Tile: one repeat count per axis

    NONE = object()

    def constant(arg):
        if arg is None:
            return NONE
        if getattr(arg, "op", None) == "get_attr":
            value = module
            for part in arg.target.split("."):
                value = getattr(value, part)
            return value.detach().cpu()
        return None

    count = 0
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        sub = module.get_submodule(node.target)
        if isinstance(sub, OnnxResize):   # its inputs by keyword: roi, scales, sizes
            names = ("roi", "scales", "sizes")
            given = dict(zip(names, node.args[1:]), **node.kwargs)
            values = [constant(given.get(k)) for k in names]
        else:
            values = [constant(a) for a in node.args[1:]]
        if not values or any(v is None for v in values):   # an input computed by the graph
            continue
        values = [None if v is NONE else v for v in values]
        if isinstance(sub, OnnxSlice) and values[0] is not None and values[1] is not None:
            starts, ends = values[0].numpy(), values[1].numpy()
            axes = values[2] if len(values) > 2 else None
            steps = values[3] if len(values) > 3 else None
            replacement = FrozenSlice(starts, ends, axes, steps)
        elif isinstance(sub, OnnxReshape) and values[0] is not None:
            replacement = FrozenReshape(values[0].tolist())
        elif isinstance(sub, OnnxTile) and values[0] is not None:
            replacement = FrozenTile(values[0].tolist())
        elif isinstance(sub, OnnxResize) and (sub.ignore_roi or values[0] is None or not values[0].numel()) \
                and not sub.ignore_bs_ch_size:
            scales = values[1].tolist() if len(values) > 1 and values[1] is not None else None
            sizes = values[2].tolist() if len(values) > 2 and values[2] is not None else None
            if (scales and scales[:2] != [1, 1]) or (not scales and not sizes):
                continue
            replacement = FrozenResize(sub, scales, sizes)
        else:
            continue
        module.add_submodule(node.target, replacement)
        node.args, node.kwargs = node.args[:1], {}
        count += 1
    module.graph.eliminate_dead_code()
    module.recompile()
    return count
