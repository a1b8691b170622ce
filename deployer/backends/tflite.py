"""TFLite backend through onnx2tf (NCHW ONNX -> NHWC TensorFlow -> .tflite), offline.

Precisions: fp32, fp16 (float16 weights), dynamic (int8 weights, float activations:
onnx2tf's "dynamic range" file, never called int8 here) and int8, calibrated on our
calibration feeds, by one of two quantizers (option `quantizer`):
- AI Edge Quantizer (quantize/aeq.py), the default with float inputs and outputs (`io =
  "float"`, the default): an int8 body with the head's decoding kept in float;
- TFLite's converter, the default with `io = "int8"`: full-integer, every op in int8 with
  int8 inputs and outputs (what NNAPI, Edge TPU and microcontrollers need). Int8 outputs of
  decoded boxes would move every box by a quantization step, so the model is built from the
  graph's body: its outputs are the head's pre-decode tensors, each with its own scale, and
  the decoding is a float TFLite file beside it (`<stem>_decode.tflite`, or the ONNX part
  where onnx2tf cannot convert it), which deployer's runners run after the model
  (ir/split.py, runtimes/decoded.py).

One onnx2tf conversion per build (the prebuild `convert_float`) gives a SavedModel; TFLite's
own converter makes every file from it with onnx2tf's settings: the float ones once per
build, the full-integer one per INT8 artifact with our feeds (onnx2tf itself would
calibrate four variants every time).

onnx2tf fetches a sample image file from the internet whenever the input is a 4-D image
(docs/ARCHITECTURE.md, "Toolchain facts"); its download function is replaced by one that returns our own
calibration images, so the conversion never touches the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from deployer.backends.base import QUANTIZE_HEAD, Backend, int8_options, repair_notes, write_repairs
from deployer.errors import StageError, first_line
from deployer.options import Option
from deployer.quantize.feeds import calibration_array
from deployer.quantize.head_float import head_note
from deployer.spec import ModelSpec

INT8_IO = ("float", "int8")
QUANTIZERS = ("auto", "ai-edge-quantizer", "converter")

BACKEND = Backend(
    name="tflite", build="deployer.backends.tflite:build", format="tflite",
    precisions=("fp32", "fp16", "dynamic", "int8"), runtimes=("litert",),
    options=int8_options(fallback=False) + (
        Option("io", str, "float", "float inputs and outputs around an int8 body, or int8 ones (full-integer)",
               choices=INT8_IO, precisions=("int8",)),
        Option("quantizer", str, "auto", "AI Edge Quantizer (head kept float) or TFLite's converter (every op "
               "int8); auto: the first with float io, the second with int8 io", choices=QUANTIZERS,
               precisions=("int8",)),
        QUANTIZE_HEAD),
    op_support="deployer.backends.tflite:unsupported_ops", family="tensorflow", graph_nms=True,
    prebuild="deployer.backends.tflite:convert_float", preload=("tensorflow", "onnx2tf"),
    summary="TFLite through onnx2tf: fp32, fp16, dynamic range; INT8 by AI Edge Quantizer or full-integer")


def _tile_as_concat(src: str, dst: Path, extra_outputs: tuple = ()) -> list[str]:
    """Copy an ONNX file, rewriting Tile ops that repeat one axis by a constant into Concat,
    and making the intermediate tensors `extra_outputs` graph outputs after its own.

    onnx2tf 1.29 mis-converts 5-D Tile (tf2onnx writes Keras' nearest upsampling as
    Unsqueeze -> Tile -> Reshape): "Shape must be rank 5 but is rank 1". Concatenating
    the copies along that axis is the same computation and converts cleanly. Returns the
    names of the nodes rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(src)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes, rewritten = [], []
    for node in model.graph.node:
        reps = consts.get(node.input[1]) if node.op_type == "Tile" and len(node.input) > 1 else None
        if reps is not None and int((reps != 1).sum()) == 1:
            axis = int(np.flatnonzero(reps != 1)[0])
            rewritten.append(node.name or node.output[0])
            nodes.append(helper.make_node("Concat", [node.input[0]] * int(reps[axis]), list(node.output),
                                          name=f"{node.name or node.output[0]}_as_concat", axis=axis))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if extra_outputs:   # intermediate tensors made graph outputs too (after the model's own)
        known = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        model.graph.output.extend(known[name] for name in extra_outputs)
    onnx.save(model, str(dst))
    return rewritten


@contextlib.contextmanager
def _no_keras_tflite():
    """onnx2tf writes its own float TFLite files through `from_keras_model`, which serialises
    the whole Keras model each time (about 10 s apiece for the 0.9 M-parameter example);
    deployer converts its files from the SavedModel instead (about 1 s each), so onnx2tf is
    sent down its concrete-function path and those files of its are not used."""
    import tensorflow as tf

    def refuse(*args, **kwargs):
        raise RuntimeError("deployer converts the TFLite files from the SavedModel itself")

    original = tf.lite.TFLiteConverter.__dict__["from_keras_model"]
    tf.lite.TFLiteConverter.from_keras_model = refuse
    try:
        yield
    finally:
        tf.lite.TFLiteConverter.from_keras_model = original


def convert(onnx_path: str, spec: ModelSpec, calibration: str, workdir: Path, extra_outputs: tuple = (),
            **kwargs) -> tuple[Path, list[dict]]:
    """Run onnx2tf in-process, offline; returns the folder it wrote (its SavedModel), whose
    outputs are the graph's and then `extra_outputs` (intermediate tensors)."""
    import onnx2tf
    import onnx2tf.onnx2tf as onnx2tf_main
    import onnx2tf.utils.common_functions as common

    offline = lambda: calibration_array(calibration, spec, 20, layout="NHWC")  # noqa: E731 - the downloader's stand-in
    onnx2tf_main.download_test_image_data = offline
    common.download_test_image_data = offline
    out = workdir / "onnx2tf"
    workdir.mkdir(parents=True, exist_ok=True)
    # onnx2tf writes its onnxsim result back over its input file: give it a private copy
    # so the shared intermediate (and its hash) never changes under the other backends.
    private = workdir / Path(onnx_path).name
    tiles = _tile_as_concat(onnx_path, private, tuple(extra_outputs))
    repairs = [{"kind": "tile_as_concat", "nodes": tiles,
                "note": f"repaired for onnx2tf: {len(tiles)} one-axis Tile op(s) rewritten as Concat "
                        f"(the same computation; onnx2tf mis-converts 5-D Tile): {', '.join(tiles[:5])}"}] if tiles else []
    nhwc = [i.name for i in spec.inputs if i.layout == "NHWC"]
    if nhwc:  # already channels-last (a TensorFlow source): onnx2tf must not transpose it again
        kwargs.setdefault("keep_nwc_or_nhwc_or_ndhwc_input_names", nhwc)
    log = io.StringIO()
    # Keras numbers auto-named layers with counters of the whole process (tf.math.multiply_12):
    # in a warm worker that converted another model before, the same model would get other
    # tensor names and other bytes. A fresh Keras session per conversion keeps them equal.
    # onnx2tf builds with tf_keras (Keras 2), whatever tf.keras is in this process.
    import tf_keras

    tf_keras.backend.clear_session()
    try:
        with contextlib.redirect_stdout(log), _no_keras_tflite():
            onnx2tf.convert(input_onnx_file_path=str(private), output_folder_path=str(out),
                            output_signaturedefs=True, non_verbose=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any converter failure: name the ONNX node it failed on
        nodes = _failing_nodes(exc)
        if not nodes:
            raise
        where = f"ONNX node {_described(nodes[-1])}"
        if len(nodes) > 1:   # a node of an If/Loop branch: the node holding that branch names the op
            where += f" inside {_described(nodes[0])}"
        raise StageError(f"onnx2tf cannot convert {where}: {_with_detail(exc, nodes[-1])}") from exc
    return out, repairs


def _failing_nodes(exc: BaseException) -> list:
    """The ONNX nodes onnx2tf was converting when it failed, outermost first (its op modules
    take `graph_node`; If and Loop convert their branches' nodes inside their own call)."""
    tb, nodes = exc.__traceback__, []
    while tb is not None:
        frame = tb.tb_frame
        if "/onnx2tf/ops/" in frame.f_code.co_filename and "graph_node" in frame.f_locals:
            node = frame.f_locals["graph_node"]
            if not nodes or nodes[-1] is not node:
                nodes.append(node)
        tb = tb.tb_next
    return nodes


def _described(node) -> str:
    op = getattr(node, "op", None) or getattr(node, "op_type", "?")   # an onnx-graphsurgeon Node
    return f"'{node.name}' (op {op})"


def _with_detail(exc: BaseException, node=None) -> str:
    """The first line of a TensorFlow error, and the line below it that says what was wrong
    (TF puts the layer first and the reason a few lines down). A KeyError naming one of the
    node's inputs is onnx2tf looking up a tensor it has not converted: said so, rather than
    the bare quoted name."""
    inputs = [getattr(t, "name", "") for t in getattr(node, "inputs", [])]
    if isinstance(exc, KeyError) and exc.args and exc.args[0] in inputs:
        return f"its input '{exc.args[0]}' had not been converted (KeyError)"
    lines = str(exc).splitlines()[1:]
    detail = next((line for line in lines if "expected" in line or "Can not" in line or "cannot" in line), "")
    return first_line(exc, 200) + (f" ({detail.strip()[:300]})" if detail else "")


def _named_saved_model(onnx2tf_dir: Path, spec: ModelSpec, out: Path, picks: list[int] | None = None) -> None:
    """onnx2tf's SavedModel names its signature's outputs output_0, output_1...: save it again
    with the spec's input and output names, so the TFLite files and the TF.js model carry them.
    The spec's outputs are onnx2tf's in order, or those at positions `picks` (the converters
    prune what the picked outputs do not need)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(onnx2tf_dir))
    fn = loaded.signatures["serving_default"]
    keys = list(fn.structured_input_signature[1])
    if {i.name for i in spec.inputs} <= set(keys):   # onnx2tf keeps ONNX input names: match by name
        keys = [i.name for i in spec.inputs]
    outputs = sorted(fn.structured_outputs, key=lambda k: int(k.rpartition("_")[2]) if k[-1].isdigit() else 0)
    shapes = {k: v.shape for k, v in fn.structured_input_signature[1].items()}

    @tf.function(input_signature=[tf.TensorSpec(shapes[k], tf.float32, name=i.name) for k, i in zip(keys, spec.inputs)])
    def serve(*xs):
        result = fn(**dict(zip(keys, xs)))
        chosen = outputs if picks is None else [outputs[i] for i in picks]
        return {name: result[key] for name, key in zip(spec.outputs, chosen)}

    tf.saved_model.save(loaded, str(out), signatures={"serving_default": serve.get_concrete_function()})


def _tflite(saved_model: Path, precision: str, representative=None, io: str = "int8") -> bytes:
    """TFLite's converter on the SavedModel, with onnx2tf's settings for each precision."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    ops = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [ops, tf.lite.OpsSet.SELECT_TF_OPS]
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        converter.representative_dataset = representative
        if io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


FLOAT_FILES = {"fp32": "float32.tflite", "fp16": "float16.tflite", "dynamic": "dynamic_range_quant.tflite"}


def convert_float(onnx_path: str, spec: dict, options: dict, calibration: str, out_dir: str) -> dict:
    """Prebuild stage: one onnx2tf conversion to a SavedModel (with the spec's tensor names),
    and from it the float TFLite files (float32, float16, dynamic range); the full-integer
    build and TF.js convert from the same SavedModel."""
    from deployer.ir.split import split

    spec = ModelSpec.from_dict(spec)
    out = Path(out_dir)
    # The head's pre-decode tensors are converted as extra outputs, so that a full-integer
    # build takes its body from this one conversion (`_pre_decode`).
    parts = split(onnx_path, out / "split", body=False)
    extra: list[str] = []
    for p in (parts or {}).get("pre_decode", []):   # where each is among the converted model's outputs
        if p["tensor"] in spec.outputs:             # an output the body makes itself
            p["position"] = spec.outputs.index(p["tensor"])
        else:
            p["position"] = len(spec.outputs) + len(extra)
            extra.append(p["tensor"])
    converted, repairs = convert(onnx_path, spec, calibration, out / "work", extra_outputs=tuple(extra))
    _named_saved_model(converted, spec, out / "saved_model")
    if parts:
        (out / "split" / "parts.json").write_text(json.dumps(parts))
        shutil.move(str(converted), str(out / "onnx2tf"))
    shutil.rmtree(out / "work", ignore_errors=True)
    write_repairs(out, repairs)
    for precision, name in FLOAT_FILES.items():
        (out / name).write_bytes(_tflite(out / "saved_model", precision))
    return {"files": sorted(p.name for p in out.iterdir())}


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    """The artifact for `precision`: a float file of the shared conversion (`convert_float`),
    or an INT8 model calibrated on our feeds (NHWC, in order) by the option's quantizer."""
    shared = Path(prebuilt)
    name = f"{stem}.tflite"
    result = {"path": name, "files": [name], "format": "tflite", "notes": repair_notes(shared)}
    if precision != "int8":
        shutil.copyfile(shared / FLOAT_FILES[precision], Path(out_dir) / name)
        if precision == "dynamic":
            result["notes"].append("dynamic range: int8 weights, float activations (not a full-integer model)")
        return result
    spec = ModelSpec.from_dict(spec)
    x = calibration_array(calibration, spec, options["calibration_images"], layout="NHWC")
    io = options["io"]
    quantizer = options["quantizer"]
    if quantizer == "auto":
        quantizer = "ai-edge-quantizer" if io == "float" else "converter"
    if quantizer == "converter":
        result["notes"].append(f"full-integer INT8 by TFLite's converter ({io} inputs and outputs), per-channel "
                               f"weights, calibrated on {len(x)} images")
        pre = None if options["quantize_head"] else _pre_decode(shared, spec, calibration, x, io,
                                                                Path(out_dir), stem)
        if pre is None:
            data, quantization = _full_integer(shared, spec, x, io), {}
        else:
            data, parts = pre
            result["files"].append(parts["decode"])
            result["decode"] = parts["decode"]
            quantization = {"pre_decode": parts["pre_decode"], "decode": result["decode"]}
            if parts.get("decode_note"):
                result["notes"].append(parts["decode_note"])
            result["notes"].append(
                f"outputs before the head's decoding: {len(parts['pre_decode'])} {io} tensors, each with its own "
                f"scale ({', '.join(p['name'] + ' = ' + p['tensor'] for p in parts['pre_decode'][:6])}); the "
                f"decoding ({parts['decode_nodes']} nodes) runs in float after the model: {result['decode']} "
                "(options.quantize_head = true quantizes the whole graph instead)")
    else:
        from deployer.quantize import aeq

        # int8 outputs come from int8 ops: with a float head, AI Edge Quantizer 0.4.1 writes
        # output tensors LiteRT never fills ("Tensor data is null"), so int8 io quantizes it.
        quantize_head = options["quantize_head"] or io == "int8"
        data, quantization = aeq.quantize((shared / FLOAT_FILES["fp32"]).read_bytes(), x, io, quantize_head)
        if quantize_head and not options["quantize_head"]:
            result["notes"].append("int8 outputs: the head's decoding is quantized too")
        floats = ", ".join(f"{op} x{n}" for op, n in quantization["float_ops"].items())
        result["notes"].append(f"INT8 by AI Edge Quantizer ({io} inputs and outputs), per-channel int8 weights, "
                               f"int8 activations, calibrated on {len(x)} images; ops computing in float: "
                               f"{floats or 'none'}")
        result["notes"] += head_note(quantization["head_float"])
        if quantization["unfit_bias"]:
            result["notes"].append(f"kept in float, their bias does not fit int32 at input x weight scale: "
                                   f"{', '.join(quantization['unfit_bias'])}")
    (Path(out_dir) / name).write_bytes(data)
    result["quantization"] = {"method": quantizer, "calibration_images": len(x), "io": io,
                              "weights": "int8 per-channel", "activations": "int8", "kept_float": [],
                              **quantization}
    return result


def _pre_decode(shared: Path, spec: ModelSpec, calibration: str, x: np.ndarray, io: str,
                out_dir: Path, stem: str) -> tuple[bytes, dict] | None:
    """The full-integer model of the graph's body, whose outputs are the head's pre-decode
    tensors (ir/split.py; converted with the float model by `convert_float`), and its
    decoding as a float TFLite file in `out_dir` (inputs in the body's output layout, as
    onnx2tf converts both), or the ONNX part where onnx2tf cannot convert it. None when the
    graph has no decoding to split off."""
    if not (shared / "split" / "parts.json").is_file():
        return None
    parts = json.loads((shared / "split" / "parts.json").read_text())
    with tempfile.TemporaryDirectory(prefix="deployer-body-") as tmp:
        work = Path(tmp)
        body = dataclasses.replace(spec, outputs=[p["name"] for p in parts["pre_decode"]])
        _named_saved_model(shared / "onnx2tf", body, work / "saved_model",
                           picks=[p["position"] for p in parts["pre_decode"]])
        data = _full_integer(work, body, x, io)
        decode = _onnx_inputs(shared / "split" / "decode.onnx", spec)
        try:
            converted, _ = convert(str(shared / "split" / "decode.onnx"), decode, calibration, work / "decode")
            _named_saved_model(converted, decode, work / "decode_saved_model")
            parts["decode"] = f"{stem}_decode.tflite"
            (out_dir / parts["decode"]).write_bytes(_tflite(work / "decode_saved_model", "fp32"))
        except Exception as exc:  # noqa: BLE001 - the ONNX decoding runs as well, in ONNX Runtime
            parts["decode"] = f"{stem}_decode.onnx"
            parts["decode_note"] = f"the decoding is ONNX (onnx2tf cannot convert it: {first_line(exc, 160)})"
            shutil.copyfile(shared / "split" / "decode.onnx", out_dir / parts["decode"])
    return data, parts


def _onnx_inputs(path: Path, spec: ModelSpec) -> ModelSpec:
    """`spec` with the inputs of the ONNX file at `path` (names, shapes; NCHW as ONNX is)."""
    import onnx

    from deployer.spec import InputSpec

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [InputSpec(name=i.name, shape=[d.dim_value or 1 for d in i.type.tensor_type.shape.dim])
              for i in graph.input]
    return dataclasses.replace(spec, inputs=inputs)


def _full_integer(shared: Path, spec: ModelSpec, x: np.ndarray, io: str) -> bytes:
    """TFLite's converter's full-integer quantization of the shared SavedModel, as onnx2tf
    does it: per-channel int8 weights, int8 activations, int8 or float inputs and outputs."""
    import tensorflow as tf

    key = spec.inputs[0].name

    def representative():
        for k in range(len(x)):
            yield {key: tf.convert_to_tensor(x[k:k + 1], tf.float32)}

    return _tflite(shared / "saved_model", "int8", representative, io)


def unsupported_ops(path: str, ops: dict) -> list[str]:
    """ONNX ops onnx2tf has no converter for (it has one module per op it converts)."""
    return [op for op in ops if importlib.util.find_spec(f"onnx2tf.ops.{op}") is None]
