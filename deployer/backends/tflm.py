"""TensorFlow Lite Micro backend: what a microcontroller build takes (docs/ARCHITECTURE.md,
"Firmware").

The model is the full-integer INT8 TFLite of the TFLite backend (int8 inputs and outputs,
per-channel int8 weights, calibrated on the spec's images, the graph's body whose outputs are
the head's pre-decode tensors) and its float decoding beside it, both checked against TFLM's
builtin kernels (an op TFLM lacks fails the build naming the op and the layer). Each is also
written as C++ sources (an aligned byte array and its tensors' constants), with one op
resolver registering exactly their kernels, and each one's tensor arena measured in the
real TFLM interpreter: the smallest that works, and that plus `arena_headroom` to declare.

Verified in TFLM itself (runtime `tflm`) and in LiteRT.
"""

from __future__ import annotations

import math
from pathlib import Path

from deployer.backends.base import QUANTIZE_HEAD, Backend, int8_options
from deployer.errors import StageError
from deployer.options import Option

HEADROOM = Option("arena_headroom", float, 0.25, "arena declared = measured minimum x (1 + this): room for "
                  "optimised kernels' scratch buffers (CMSIS-NN, ESP-NN), which TFLM's reference kernels do "
                  "not request (4 = five times the minimum: more is a typo, not headroom)", minimum=0.0,
                  maximum=4.0, precisions=("int8",))

BACKEND = Backend(
    name="tflm", build="deployer.backends.tflm:build", format="tflite", precisions=("int8",),
    runtimes=("tflm", "litert"), options=int8_options(fallback=False) + (QUANTIZE_HEAD, HEADROOM),
    family="tensorflow", prebuild="deployer.backends.tflite:convert_float", preload=("tensorflow", "onnx2tf"),
    op_support="deployer.backends.tflm:unsupported_ops",
    summary="TensorFlow Lite Micro: full-integer INT8 TFLite, C++ sources, op resolver, measured tensor arena")


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    from deployer import __version__
    from deployer.backends import tflite
    from deployer.firmware import micro, sources
    from deployer.spec import ModelSpec

    result = tflite.build(onnx_path, spec, "int8", {**options, "io": "int8", "quantizer": "converter"}, out_dir,
                          stem, calibration, prebuilt)
    out = Path(out_dir)
    if str(result.get("decode", "")).endswith(".onnx"):
        raise StageError(f"{result['decode']}: the head's decoding could not be converted to TFLite, and a "
                         "microcontroller runs no ONNX; set options.quantize_head = true to quantize the "
                         "whole graph instead (less accurate), or decode in the application")
    spec = ModelSpec.from_dict(spec)
    ident = sources.c_ident(stem)
    files = [result["path"]] + ([result["decode"]] if result.get("decode") else [])
    models = []
    for i, name in enumerate(files):
        data, selects = micro.select_as_v2((out / name).read_bytes())
        if selects:
            (out / name).write_bytes(data)
            result["notes"].append(f"{name}: {selects} SELECT op(s) written as SELECT_V2 (the same op with "
                                   "broadcasting; TFLM has no SELECT kernel)")
        g = micro.check(data, name)
        arena_min = micro.minimum_arena(data, name)
        arena = math.ceil(arena_min * (1 + options["arena_headroom"]) / micro.ALIGN) * micro.ALIGN
        it = micro.interpreter(data, arena)
        io = [[_tensor(n, d) for n, d in zip(names, details)]
              for names, details in ((g.inputs, micro.inputs(it, g)), (g.outputs, micro.outputs(it, g)))]
        role = ("the model: int8 in, the head's pre-decode tensors out (int8)" if i == 0 and len(files) > 1
                else "the model" if i == 0 else f"the head's decoding in float, run after {ident}_model "
                "(inputs: its outputs dequantized)")
        models.append(sources.ModelFile(name, ident if i == 0 else f"{ident}_decode", data, [op for op, _ in g.ops],
                                        *io, arena_min, arena, role))
    what = f"deployer {__version__}, model '{spec.name}'"
    result["files"] += sources.write(out, ident, models, spec.labels, what)
    flash = sum(len(m.data) for m in models)
    ram = sum(m.arena for m in models)
    result["memory"] = {
        "flash_bytes": flash, "arena_bytes": ram, "arena_min_bytes": sum(m.arena_min for m in models),
        "arena_headroom": options["arena_headroom"],
        "measured": "TFLM interpreter (reference kernels, x86-64): 32-bit targets need a little less for "
                    "TFLM's own structures, optimised kernels may need scratch space the headroom covers",
        "models": [{"file": m.file, "symbol": f"{m.ident}_model", "flash_bytes": len(m.data),
                    "arena_min_bytes": m.arena_min, "arena_bytes": m.arena, "ops": len(m.ops),
                    "kernels": sorted(set(m.ops))} for m in models]}
    result["notes"].append(
        f"TFLM: {flash} bytes of flash, tensor arena {ram} bytes ({' + '.join(str(m.arena) for m in models)}; "
        f"measured minimum {' + '.join(str(m.arena_min) for m in models)}); C++ sources "
        f"{ident}_model.cc/.h and {ident}_op_resolver.h ({len(set(op for m in models for op in m.ops))} kernels)")
    return result


def _tensor(name: str, d: dict):
    from deployer.firmware.sources import TensorInfo

    q = d.get("quantization_parameters") or {}
    scales, zeros = list(q.get("scales", [])), list(q.get("zero_points", []))
    return TensorInfo(name, [int(s) for s in d["shape"]], d["dtype"].__name__ if isinstance(d["dtype"], type)
                      else str(d["dtype"]), float(scales[0]) if len(scales) == 1 else 0.0,
                      int(zeros[0]) if len(zeros) == 1 else 0)


def unsupported_ops(path: str, ops: dict) -> list[str]:
    """ONNX ops with no TFLM kernel once onnx2tf has converted them (firmware/kernels.py)."""
    from deployer.firmware.kernels import onnx_unsupported

    return onnx_unsupported({op: n for op, n in ops.items() if op != "Pow"}) + (_pow_forms(path) if "Pow" in ops else [])


def _pow_forms(path: str) -> list[str]:
    """Pow by its exponent: onnx2tf writes x**2 and x**3 with constant exponents as MUL, any
    other exponent as POW, which TFLM has no kernel for."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    consts.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    for node in graph.node:
        if node.op_type != "Pow":
            continue
        exponent = consts.get(node.input[1])
        value = numpy_helper.to_array(exponent).ravel() if exponent is not None and not exponent.external_data else None
        if value is None or value.size != 1 or float(value[0]) not in (2.0, 3.0):
            what = "a computed exponent" if value is None or value.size != 1 else f"exponent {float(value[0]):g}"
            return [f"Pow (as POW: {what} at node '{node.name or node.output[0]}'; only constant x**2 and x**3 "
                    "become MUL)"]
    return []
