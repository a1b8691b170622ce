"""ONNX graphs as onnx2torch can rebuild them. onnx2torch 1.5 knows ops up to opset 17 and
refuses some attributes; the exporters write opset 18 and `Reshape(allowzero=1)`. Where the
newer form means exactly the older one, it is written the older way:
- opset 18 -> 17 when the only ops whose definition changed at 18 are Resize nodes using none
  of 18's additions (antialias, axes, keep_aspect_ratio_policy at their defaults);
- `allowzero=1` dropped from a Reshape whose shape is a constant without zeros (the flag only
  changes what a 0 in the shape means).
Anything else is left as it is, and onnx2torch names what it lacks."""

from __future__ import annotations

import numpy as np

RESIZE_18_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}


def _constants(model) -> dict:
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


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
        fits = all(n.op_type == "Resize" and all(
            helper.get_attribute_value(a) == RESIZE_18_DEFAULTS.get(a.name, helper.get_attribute_value(a))
            and a.name != "axes" for a in n.attribute) for n in changed)
        if fits:
            for n in changed:
                for a in [a for a in n.attribute if a.name in RESIZE_18_DEFAULTS]:
                    n.attribute.remove(a)
            default.version = 17
            done.append(f"opset 18 written as 17 ({len(changed)} Resize node(s) using nothing new in 18)")
    return done


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
