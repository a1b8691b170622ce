"""TensorFlow frontend: a SavedModel folder or a Keras .keras/.h5 file, lowered to ONNX with
tf2onnx (opset from the spec, recorded), and run by TensorFlow itself as the reference.

Runs in a worker process (imports TensorFlow).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from deployer.errors import UserError, first_line
from deployer.frontends.base import Frontend
from deployer.runtimes.base import Runner, Runtime, Tensor
from deployer.spec import ModelSpec

FRONTEND = Frontend(kind="tensorflow", lower="deployer.frontends.tensorflow:lower", reference_runtime="tensorflow",
                    summary="TensorFlow: a SavedModel folder, a Keras .keras or .h5 file (tf2onnx)")
RUNTIMES = (Runtime("tensorflow", "deployer.frontends.tensorflow:TensorFlowRunner", accepts=("saved_model",), settings=(),
                    reference=True, family="tensorflow", summary="the TensorFlow source model itself (reference)"),)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_custom(spec: ModelSpec) -> None:
    """Custom Keras layers register themselves on import: import the spec's python modules."""
    for folder in [*spec.source.python_path, str(Path(spec.path).parent)]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for module in spec.source.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{spec.path}: field 'source.imports': cannot import '{module}' ({exc})") from None


def load(spec: ModelSpec):
    """A callable taking the spec's inputs (in order) and returning the outputs in spec order."""
    import tensorflow as tf

    _import_custom(spec)
    path = Path(spec.source.path)
    if path.is_dir():
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # noqa: BLE001 - TF raises many types for a bad folder
            raise UserError(f"{path}: cannot load as a TensorFlow SavedModel: {first_line(exc)}") from None
        fn = loaded.signatures.get("serving_default")
        if fn is None:
            raise UserError(f"{path}: the SavedModel has no 'serving_default' signature")
        input_keys = list(fn.structured_input_signature[1])

        def call(*xs, _keep=loaded):  # holding `loaded` keeps its variables alive
            return fn(**dict(zip(input_keys, xs)))
        outputs = fn.structured_outputs
        call.output_names = list(outputs) if isinstance(outputs, dict) else None
        return call, "saved_model"
    if path.suffix not in (".keras", ".h5"):
        raise UserError(f"{path}: expected a SavedModel folder, a .keras or a .h5 file")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras archive (a zip file): " + (
            "empty file" if path.stat().st_size == 0 else "damaged or truncated") + "; save or copy the model again")
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot load the Keras model: {first_line(exc)} "
                        "(custom layers: list their modules in source.imports)") from None
    return (lambda *xs: model(*xs, training=False)), "keras"


def _ordered(outputs, spec: ModelSpec) -> list:
    """Model outputs (dict, list or tensor) in the spec's output order."""
    if isinstance(outputs, dict):
        missing = [n for n in spec.outputs if n not in outputs]
        if missing:
            raise UserError(f"{spec.path}: field 'outputs.names': the model's outputs are {sorted(outputs)}, "
                            f"not {spec.outputs}")
        return [outputs[n] for n in spec.outputs]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def traced(spec: ModelSpec):
    """(tf.function with a fixed input signature whose outputs are named as in the spec,
    the signature, the source form)."""
    import tensorflow as tf

    call, form = load(spec)
    if getattr(call, "output_names", None):
        # Checked before tracing: raised inside tf.function, the message would come wrapped
        # in TensorFlow's "in user code:" trace.
        _ordered(dict.fromkeys(call.output_names), spec)
    signature = [tf.TensorSpec(i.shape, tf.float32, name=i.name) for i in spec.inputs]

    @tf.function(input_signature=signature)
    def forward(*xs):
        return tuple(tf.identity(t, name=n) for t, n in zip(_ordered(call(*xs), spec), spec.outputs))

    return forward, signature, form


def lower(spec: dict, out_path: str, source_sha256: str, toolchain: dict) -> dict:
    """Worker stage: the source model as a checked, simplified ONNX file with metadata."""
    import tf2onnx

    from deployer.ir import onnx_ir

    spec = ModelSpec.from_dict(spec)
    forward, signature, form = traced(spec)
    model_proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=spec.source.opset)
    if len(model_proto.graph.input) > len(spec.inputs):
        # A SavedModel whose signature calls restored functions (one deployer's `tf` target
        # wrote, or any tf.function around a loaded model) leaves their captured variables as
        # graph inputs: freeze them into constants first.
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
        model_proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=spec.source.opset)
    # tf2onnx names outputs after the graph tensors: give them the spec's names.
    rename = {o.name: n for o, n in zip(model_proto.graph.output, spec.outputs)}
    for node in model_proto.graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.input[:] = [rename.get(i, i) for i in node.input]
    for o in model_proto.graph.output:
        o.name = rename[o.name]
    for i, inp in zip(model_proto.graph.input, spec.inputs):
        if i.name != inp.name:
            old = i.name
            i.name = inp.name
            for node in model_proto.graph.node:
                node.input[:] = [inp.name if x == old else x for x in node.input]
    info = onnx_ir.finalize(model_proto, out_path, spec, {
        "deployer.source_sha256": source_sha256, "deployer.source_kind": "tensorflow",
        "deployer.source_form": form, "deployer.exporter": f"tf2onnx {tf2onnx.__version__}",
        "deployer.toolchain": toolchain})
    return {**info, "exporter": f"tf2onnx {tf2onnx.__version__} (opset {spec.source.opset})",
            "exporter_note": "", "source_form": form}


class TensorFlowRunner(Runner):
    """The reference: the source model run by TensorFlow itself."""

    runtime = "tensorflow"

    def load(self) -> None:
        import tensorflow as tf

        spec, self.shapes = self.spec, {}
        if self.artifact and self.artifact != spec.source.path:
            # An artifact of the `tf` backend: its SavedModel, whose inputs may be channels-last.
            spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, kind="tensorflow",
                                                                        path=self.artifact, imports=[]))
            fn = tf.saved_model.load(self.artifact).signatures["serving_default"]
            self.shapes = {k: tuple(int(d) if d is not None else 1 for d in v.shape)
                           for k, v in fn.structured_input_signature[1].items()}
        self.call, form = load(spec)
        self.settings = {"tensorflow": tf.__version__, "source_form": form}

    def unload(self) -> None:
        self.call = None

    def io(self):
        return ([Tensor(i.name, self.shapes.get(i.name)) for i in self.spec.inputs],
                [Tensor(n) for n in self.spec.outputs])

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = _ordered(self.call(*[feed[i.name] for i in self.spec.inputs]), self.spec)
        return {name: np.asarray(t) for name, t in zip(self.spec.outputs, outs)}
