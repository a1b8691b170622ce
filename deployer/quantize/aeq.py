"""TFLite INT8 through AI Edge Quantizer (PyPI `ai-edge-quantizer`), the TFLite backend's
default quantizer for int8 bodies with float inputs and outputs (issue 12).

Compared with TFLite's converter on the same float model and calibration images, it keeps
the head's decoding in float by a per-op recipe (the converter cannot: it quantizes every
op it can) and leaves ops it has no int8 kernel for in float instead of failing; on the
example it keeps labelled mAP@0.5:0.95 at 0.769 (source 0.775) where the converter's
full-integer model drops to 0.605 (docs/ARCHITECTURE.md, "INT8").

The recipe: int8 weights (per channel) and int8 activations everywhere (`static_wi8_ai8`),
then NO_QUANTIZE for the ops of the head's decoding, found in the flatbuffer's graph by the
same walk as the ONNX backends' (quantize/head_float.py), and for the virtual INPUT and
OUTPUT ops when the inputs and outputs stay float. AI Edge Quantizer addresses an op by its
scope, the names of its output tensors each followed by ';'.
Runs in the TFLite worker (imports ai_edge_quantizer when asked).
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

from deployer.quantize.head_float import TFLITE_OPS, Op, decoding

# Ops that only convert between int8 and float: not counted as float work.
_CASTS = {"QUANTIZE", "DEQUANTIZE"}


def _flatbuffer(model: bytes):
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    return tfl_flatbuffer_utils.read_model(bytearray(model))


def _op_names(fb) -> list[str]:
    """The op type of each operator code, as TFLite's schema names it (CONV_2D, LOGISTIC...)."""
    from ai_edge_litert import schema_py_generated as schema

    builtins = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for code in fb.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        names.append(custom or builtins.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _tensor_name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def graph(model: bytes) -> tuple[list[Op], list[str]]:
    """The main subgraph's ops (named by their AI Edge Quantizer scope) and output tensors."""
    fb = _flatbuffer(model)
    sub, codes = fb.subgraphs[0], _op_names(fb)
    name = {i: _tensor_name(t) for i, t in enumerate(sub.tensors)}
    ops = []
    for op in sub.operators:
        outs = tuple(name[i] for i in op.outputs if i >= 0)
        ops.append(Op("".join(f"{o};" for o in outs), codes[op.opcodeIndex],
                      tuple(name[i] for i in op.inputs if i >= 0), outs))
    return ops, [name[i] for i in sub.outputs]


def signature(model: bytes) -> tuple[str, list[str]]:
    """(signature key, input names) of the model's first signature."""
    fb = _flatbuffer(model)
    if not fb.signatureDefs:
        raise ValueError("the float TFLite model has no signature, which AI Edge Quantizer calibrates through")
    sig = fb.signatureDefs[0]
    key = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
    return key, [i.name.decode() if isinstance(i.name, bytes) else i.name for i in sig.inputs]


def decode_ops(model: bytes) -> list[Op]:
    """The TFLite ops of the head's decoding, in graph order."""
    return _decoding(*graph(model))


def _decoding(ops: list[Op], outputs: list[str]) -> list[Op]:
    found = set(decoding(ops, outputs, TFLITE_OPS))
    return [op for op in ops if op.name in found]


def float_ops(model: bytes) -> dict[str, int]:
    """Op types (with counts) of a quantized model that still compute in float: the head kept
    float on purpose, and ops AI Edge Quantizer has no int8 kernel for."""
    from ai_edge_litert import schema_py_generated as schema

    fb = _flatbuffer(model)
    sub, codes = fb.subgraphs[0], _op_names(fb)
    counts: collections.Counter = collections.Counter()
    for op in sub.operators:
        kind = codes[op.opcodeIndex]
        outs = [sub.tensors[i] for i in op.outputs if i >= 0]
        if kind not in _CASTS and any(t.type == schema.TensorType.FLOAT32 for t in outs):
            counts[kind] += 1
    return dict(sorted(counts.items()))


def quantize(float_model: bytes, samples: np.ndarray, io: str, quantize_head: bool) -> tuple[bytes, dict]:
    """The INT8 model of `float_model` calibrated on `samples` (N images, the model's input
    layout), and what was done: {"head_float": [ops], "unfit_bias": [ops], "float_ops": {op: count}}."""
    key, inputs = signature(float_model)
    if len(inputs) != 1:
        raise ValueError(f"AI Edge Quantizer calibration feeds one input; the model has {len(inputs)}")
    ops, outputs = graph(float_model)   # the flatbuffer read once for the walk and the retries
    head = [] if quantize_head else _decoding(ops, outputs)
    feeds = {key: [{inputs[0]: samples[k:k + 1].astype(np.float32)} for k in range(len(samples))]}
    calibration, unfit = None, []
    for _ in range(MAX_UNFIT + 1):
        q = _quantizer(float_model, [op.name for op in head + unfit], io)
        if calibration is None:   # ranges of every tensor: keeping more ops float needs no new ones
            calibration = q.calibrate(feeds, num_threads=max(1, min(4, os.cpu_count() or 1)))
        try:
            model = bytes(q.quantize(calibration).quantized_model)
            break
        except ValueError as exc:
            # A bias that int32 cannot hold at input scale x weight scale (a layer whose
            # weights are near 0 next to its bias): that one op stays float, and we retry.
            found = re.search(r"Failed to quantize bias tensor .* op id (\d+)", str(exc))
            if not found or int(found.group(1)) >= len(ops) or ops[int(found.group(1))] in unfit:
                raise
            unfit.append(ops[int(found.group(1))])
    else:
        raise ValueError(f"AI Edge Quantizer could not quantize the biases of {len(unfit)} layers; "
                         "quantizer = \"converter\" quantizes them another way")
    return model, {"head_float": [_described(op) for op in head],
                   "unfit_bias": [_described(op) for op in unfit], "float_ops": float_ops(model)}


# Layers whose bias does not fit int32 that may be kept float before giving up.
MAX_UNFIT = 8


def _described(op: Op) -> str:
    return f"{op.op_type} {op.name.rstrip(';')}"


def _quantizer(float_model: bytes, keep_float: list[str], io: str):
    """AI Edge Quantizer with deployer's recipe: int8 everywhere but the ops named by scope."""
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(bytearray(float_model))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    if keep_float:
        scopes = "|".join(f"^{re.escape(name)}$" for name in keep_float)
        q.update_quantization_recipe(regex=scopes, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=AlgorithmName.NO_QUANTIZE)
    if io == "float":
        for virtual in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            q.update_quantization_recipe(regex=".*", operation_name=virtual, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return q
