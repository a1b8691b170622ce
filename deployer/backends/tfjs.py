"""TF.js backend: a graph model (model.json + sharded weights) from the SavedModel onnx2tf
writes, with the model's labels, inputs, preprocessing and head in `userDefinedMetadata`.

Precisions are TF.js weight quantizations: fp32 (none), fp16 (float16 weights) and
dynamic (uint8 affine weights, dequantized to float32 on load: the compute stays float).
tensorflowjs 4.22 cannot be installed with its dependencies (docs/ARCHITECTURE.md,
"Toolchain facts"): it is
installed without them, and the two modules it imports but this converter never uses are
stubbed before the import.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

from deployer.backends.base import Backend, repair_notes
from deployer.spec import ModelSpec

QUANTIZATION = {"fp32": None, "fp16": {"float16": "*"}, "dynamic": {"uint8": "*"}}
SHARD_BYTES = 1024 * 1024

BACKEND = Backend(
    name="tfjs", build="deployer.backends.tfjs:build", format="tfjs-graph-model",
    precisions=tuple(QUANTIZATION), runtimes=("tfjs-node", "tfjs-chromium"), web_engine="tfjs",
    # The graph model is converted from onnx2tf's SavedModel: what onnx2tf refuses, TF.js never sees.
    op_support="deployer.backends.tflite:unsupported_ops", family="tensorflow", graph_nms=True,
    # The SavedModel of the one onnx2tf conversion the TFLite artifacts share.
    prebuild="deployer.backends.tflite:convert_float", preload=("tensorflow", "onnx2tf"),
    summary="TF.js graph model (model.json + shards): fp32, fp16 or uint8 weight storage")


def _converter():
    for name in ("tensorflow_decision_forests", "tensorflow_hub"):
        sys.modules.setdefault(name, types.ModuleType(name))
    from tensorflowjs.converters import tf_saved_model_conversion_v2

    return tf_saved_model_conversion_v2


def _name_signature_outputs(model_json: Path, outputs: list[str]) -> list[str]:
    """The converter sometimes keys a signature output by its graph tensor ("Identity_2:0")
    instead of its name (seen with the four outputs of a graph with NMS). The SavedModel's
    signature flattens outputs in sorted key order and the converter numbers the Identity
    nodes in that order, so `Identity_<i>:0` is the i-th name in sorted order; rename only
    when the outputs already keyed by name agree with that rule."""
    doc = json.loads(model_json.read_text())
    sig = doc.get("signature", {}).get("outputs", {})
    ordered = sorted(outputs)

    def index(node: str) -> int | None:
        m = re.fullmatch(r"Identity(?:_(\d+))?:0", node)
        return (int(m.group(1) or 0) if m else None)

    if not sig or len(sig) != len(ordered) or any(index(v.get("name", "")) is None for v in sig.values()):
        return []
    if any(index(v["name"]) >= len(ordered) or (k in outputs and ordered[index(v["name"])] != k)
           for k, v in sig.items()):
        return []
    renamed = {ordered[index(v["name"])] if k not in outputs else k: v for k, v in sig.items()}
    if renamed.keys() == sig.keys() or set(renamed) != set(outputs):
        return []
    doc["signature"]["outputs"] = renamed
    model_json.write_text(json.dumps(doc))
    return [f"signature outputs keyed by tensor ({', '.join(k for k in sig if k not in outputs)}) renamed to the "
            "spec's names"]


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str, prebuilt: str) -> dict:
    model_spec = ModelSpec.from_dict(spec)
    folder = Path(out_dir) / stem
    folder.mkdir()
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        # The converter may write beside its input: give it a private copy of the SavedModel.
        saved_model = Path(tmp) / "saved_model"
        shutil.copytree(Path(prebuilt) / "saved_model", saved_model)
        _converter().convert_tf_saved_model(
            str(saved_model), str(folder), signature_def="serving_default", saved_model_tags="serve",
            quantization_dtype_map=QUANTIZATION[precision], weight_shard_size_bytes=SHARD_BYTES,
            metadata={"deployer": {"model": model_spec.name, "labels": spec["labels"], "inputs": spec["inputs"],
                                   "outputs": spec["outputs"], "preprocess": spec["preprocess"],
                                   "head": spec["head"], "precision": precision}})
    notes_signature = _name_signature_outputs(folder / "model.json", model_spec.outputs)
    # The converter writes the graph's attribute maps in protobuf map order, which changes from
    # run to run: sorted keys make the same model the same bytes (lists, such as the weights
    # manifest, keep their order).
    model_json = folder / "model.json"
    model_json.write_text(json.dumps(json.loads(model_json.read_text()), sort_keys=True))
    files = sorted(f"{stem}/{p.name}" for p in folder.iterdir())
    shards = sum(1 for f in files if f.endswith(".bin"))
    notes = [f"TF.js graph model, {shards} weight shard(s) of at most {SHARD_BYTES // 1024} KiB",
             *repair_notes(prebuilt)]
    if precision != "fp32":
        notes.append(f"weights stored as {next(iter(QUANTIZATION[precision]))}, computed in float32")
    notes += notes_signature
    return {"path": f"{stem}/model.json", "files": files, "format": "tfjs-graph-model", "notes": notes}
