"""A TFLite flatbuffer as TensorFlow Lite Micro sees it, in the real TFLM interpreter (PyPI
`tflite-micro`): its ops and the layers using them, its inputs and outputs by signature
name, and the smallest tensor arena it runs in.

Worker side: imports `tflite_micro` (its own flatbuffer schema and the interpreter) inside
the functions. TFLM reports why it failed on stderr only (MicroPrintf) and raises a bare
"TFLM failed to allocate tensors": `interpreter()` reads that stderr into the error.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from dataclasses import dataclass

import numpy as np

from deployer.errors import StageError
from deployer.firmware.kernels import ADVICE, unsupported

ALIGN = 16          # TFLM aligns arena buffers to 16 bytes; the sources declare alignas(16)
MAX_ARENA = 1 << 30


@dataclass
class Graph:
    ops: list[tuple[str, str]]                 # (op name, the layer it computes: its first output tensor)
    inputs: list[str]                          # signature names (tensor names without a signature), in order
    outputs: list[str]


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def graph(data: bytes) -> Graph:
    """Ops (builtin names, or the custom code of custom ops) and IO names of the first subgraph."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    text = lambda b: b.decode() if isinstance(b, bytes) else str(b)   # noqa: E731

    ops = []
    for op in sub.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        if kind == "CUSTOM":
            kind = text(code.customCode)
        layer = text(sub.tensors[op.outputs[0]].name) if len(op.outputs) else ""
        ops.append((kind, layer))
    by_index = {}
    for sig in model.signatureDefs or []:   # serving signature: index -> the name an application uses
        for t in (sig.inputs or []) + (sig.outputs or []):
            by_index[t.tensorIndex] = text(t.name)
    name = lambda i: by_index.get(i, text(sub.tensors[i].name))   # noqa: E731
    return Graph(ops, [name(i) for i in sub.inputs], [name(i) for i in sub.outputs])


def io_tensors(data: bytes) -> tuple[list[dict], list[dict]]:
    """dtype and shape of the first subgraph's inputs and outputs, as the flatbuffer states them."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(data, 0)
    sub = model.Subgraphs(0)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def info(i: int) -> dict:
        t = sub.Tensors(i)
        return {"dtype": types.get(t.Type(), "?"), "shape": [int(x) for x in t.ShapeAsNumpy()] if t.ShapeLength() else []}
    return ([info(sub.Inputs(i)) for i in range(sub.InputsLength())],
            [info(sub.Outputs(i)) for i in range(sub.OutputsLength())])


def check(data: bytes, file: str) -> Graph:
    """The graph, or a StageError naming each op TFLM has no kernel for and the layer using it."""
    g = graph(data)
    missing = unsupported(g.ops)
    if missing:
        what = "; ".join(f"op {op} (layer '{layer}'{': ' + ADVICE[op] if op in ADVICE else ''})"
                         for op, layer in missing)
        raise StageError(f"{file}: TensorFlow Lite Micro has no kernel for {what}")
    return g


@contextlib.contextmanager
def _stderr_into(lines: list[str]):
    """Collect what C code writes to fd 2 (TFLM's MicroPrintf) while the block runs."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(line.strip() for line in tmp.read().decode(errors="replace").splitlines() if line.strip())


def interpreter(data: bytes, arena: int):
    """A TFLM interpreter over `data` with an arena of `arena` bytes (allocated at creation);
    a RuntimeError carrying TFLM's own reason when it cannot be made."""
    from tflite_micro.python.tflite_micro import runtime

    said: list[str] = []
    try:
        with _stderr_into(said):
            return runtime.Interpreter.from_bytes(data, arena_size=int(arena))
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {' / '.join(said[-3:])}" if said else str(exc)) from None


def _fits(data: bytes, arena: int) -> bool:
    try:
        interpreter(data, arena)
        return True
    except RuntimeError:
        return False


def minimum_arena(data: bytes, file: str = "model") -> int:
    """The smallest arena (bytes) TFLM allocates this model in, by bisection over real
    interpreters (allocation is all done at creation: TFLM never allocates while it runs).
    Checked by one inference at that size."""
    high = max(ALIGN, len(data))
    while not _fits(data, high):
        if high >= MAX_ARENA:
            try:   # TFLM's own reason (an op it lacks, a type a kernel refuses)
                interpreter(data, MAX_ARENA)
            except RuntimeError as exc:
                raise StageError(f"{file}: TensorFlow Lite Micro cannot run it: {exc}") from None
        high = min(high * 2, MAX_ARENA)
    low = 0   # 0 never fits, high does: bisect between (about 20 interpreters)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _fits(data, mid) else (mid, high)
    it, g = interpreter(data, high), graph(data)
    run(it, [np.zeros(d["shape"], d["dtype"]) for d in inputs(it, g)], len(g.outputs))
    return high


def inputs(it, g: Graph) -> list[dict]:
    """TFLM's details of each input (shape, dtype, quantization), in order."""
    return [it.get_input_details(i) for i in range(len(g.inputs))]


def outputs(it, g: Graph) -> list[dict]:
    return [it.get_output_details(i) for i in range(len(g.outputs))]


def run(it, xs: list[np.ndarray], n_outputs: int) -> list[np.ndarray]:
    for i, x in enumerate(xs):
        it.set_input(x, i)
    it.invoke()
    return [np.array(it.get_output(i)) for i in range(n_outputs)]


def select_as_v2(data: bytes) -> tuple[bytes, int]:
    """`data` with its SELECT ops made SELECT_V2, and how many. TFLite's converter writes a
    where() whose operands have equal shapes as SELECT, a kernel TFLM lacks; SELECT_V2 is
    the same op with broadcasting, and both have empty options tables, so the operator
    codes and the operators' option types are rewritten in place (nothing else moves)."""
    schema = _schema()
    ops, options = schema.BuiltinOperator, schema.BuiltinOptions
    buf = bytearray(data)
    model = schema.Model.GetRootAsModel(buf, 0)
    select = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != ops.SELECT:
            continue
        select.add(i)
        tab = code._tab
        for field, fmt in ((4, "<b"), (10, "<i")):   # deprecated_builtin_code (int8), builtin_code (int32)
            at = tab.Offset(field)
            if at:
                struct.pack_into(fmt, buf, tab.Pos + at, ops.SELECT_V2)
    count = 0
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for j in range(sub.OperatorsLength()):
            op = sub.Operators(j)
            if op.OpcodeIndex() in select:
                at = op._tab.Offset(10)   # builtin_options_type (uint8)
                if at:
                    struct.pack_into("<B", buf, op._tab.Pos + at, options.SelectV2Options)
                count += 1
    return bytes(buf), count


def inspect(path: str) -> dict:
    """Stage for `deployer inspect` on a .tflite: its interface, op counts and TFLM support."""
    from collections import Counter

    from deployer.errors import UserError

    data = open(path, "rb").read()
    try:
        g = graph(data)
    except Exception as exc:  # noqa: BLE001 - not a TFLite flatbuffer: say so, with the file
        raise UserError(f"{path}: not a readable TFLite flatbuffer ({type(exc).__name__})") from None
    inputs, outputs = io_tensors(data)
    # Read from the flatbuffer, not an interpreter: a model TFLM cannot load still shows its interface.
    return {"format": "tflite", "opset": "-", "producer": "TFLite flatbuffer",
            "inputs": [{"name": n, **t} for n, t in zip(g.inputs, inputs)],
            "outputs": [{"name": n, **t} for n, t in zip(g.outputs, outputs)],
            "ops": dict(Counter(op for op, _ in g.ops)), "metadata": {},
            "support": {"tflm": [f"{op} (layer '{layer}')" for op, layer in unsupported(g.ops)]}}
