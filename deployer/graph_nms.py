"""Artifacts with NMS in their graph ([head] nms = "graph", or `nms = "graph"` on a profile's
artifact): what the parent does for them (docs/ARCHITECTURE.md, "NMS in the graph").

Such an artifact is built by the usual backend from a different ONNX model, the lowered one
with its head's decoding and NonMaxSuppression appended (ir/nms.py, made once per build
and cached), under a derived spec: that model as an ONNX source, the four finished outputs,
and an `end2end` head reading them. Its parity is measured against the same reference as
the other artifacts: its finished detections against the source's outputs decoded by
deployer (there are no raw tensors to compare), with detection thresholds by default
(spec.GRAPH_NMS_THRESHOLDS).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from deployer.backends import get as backend_of
from deployer.errors import UserError
from deployer.ir.nms import OUTPUTS
from deployer.prepare import head_files_key
from deployer.spec import ArtifactPlan, Head, ModelSpec, TargetProfile

STAGE = "deployer.ir.nms:append_nms"


def wanted(plan: ArtifactPlan, spec: ModelSpec) -> bool:
    return plan.nms_for(spec.head.nms) == "graph"


def check_plans(spec: ModelSpec, profiles: list[TargetProfile]) -> None:
    """Before any work: with [head] nms = "graph" every artifact's backend must build it, unless
    the profile's artifact says nms = "none"."""
    for profile in profiles:
        for i, plan in enumerate(profile.artifacts):
            backend = backend_of(plan.backend)
            if wanted(plan, spec) and not backend.graph_nms and backend.options is not None:
                raise UserError(f"{spec.path}: field 'head.nms': backend '{plan.backend}' of target "
                                f"'{profile.name}' cannot put NMS in its artifact's graph; set nms = \"none\" on "
                                f"that artifact in {profile.path} (field 'artifacts[{i}].nms')")


def derived_spec(spec: ModelSpec, onnx_path: str = "", best_class: bool = False) -> ModelSpec:
    """The spec an artifact with NMS in its graph is built and verified under (module docstring);
    `best_class` when its backend's NMS keeps each box under its best class only."""
    head = Head(type="end2end", score_threshold=spec.head.score_threshold, iou_threshold=spec.head.iou_threshold,
                max_detections=spec.head.max_detections, nms="none",
                params={"boxes": OUTPUTS[0], "scores": OUTPUTS[1], "classes": OUTPUTS[2], "count": OUTPUTS[3],
                        "box_format": "xyxy", "normalized": False, "class_offset": 0,
                        "score_floor": spec.head.score_threshold, "graph_nms": True, "best_class": best_class})
    if best_class:   # the source's head, to decode the reference the same way (parity/compare.py)
        head.params["source_head"] = spec.head.to_dict()
    source = dataclasses.replace(spec.source, kind="onnx", path=onnx_path, factory="", weights="", recipe="")
    return dataclasses.replace(spec, source=source, outputs=list(OUTPUTS), head=head)


def derived_for(spec: ModelSpec, backend: str, onnx_path: str = "") -> ModelSpec:
    """derived_spec with the NMS semantics of `backend`'s artifacts (best class or not)."""
    return derived_spec(spec, onnx_path, backend_of(backend).graph_nms_best_class)


def deployed(entry: dict, spec: ModelSpec) -> dict:
    """What deployer.json tells an app of an artifact with NMS in its graph: its own outputs and head."""
    if entry.get("nms") != "graph":
        return {}
    head = derived_for(spec, entry["backend"]).head
    return {"outputs": list(OUTPUTS), "head": head.to_dict()}


def prepared(prep, spec: ModelSpec, target: str, backend: str):
    """(the Prepared and spec an artifact with NMS in its graph builds from, the added nodes):
    the NMS model made once per build (whichever artifact asks first) and cached."""
    key = prep.cache.key("nms", STAGE, prep.keys["onnx"], spec.head.to_dict(), spec.labels, spec.inputs,
                         head_files_key(spec))

    def make(folder: Path) -> dict:
        return prep.stages.run(STAGE, (target, "", "nms graph"), "onnx", -100, onnx_path=str(prep.onnx_path),
                               spec=spec.to_dict(), out_dir=str(folder)).value

    def shared():
        start = time.perf_counter()
        hit, reused = prep.cache.cached("nms", key, make)
        prep.add_step(target, "nms graph", start, reused)
        return hit

    hit = prep.once(key, shared)
    onnx_path = hit.folder / "model_nms.onnx"
    info = {**prep.onnx_info, "outputs": hit.value["outputs"]}
    derived = dataclasses.replace(prep, onnx_path=onnx_path, onnx_info=info, keys={**prep.keys, "onnx": key})
    return derived, derived_for(spec, backend, str(onnx_path)), hit.value["nodes"]


def for_plan(prep, spec: ModelSpec, plan: ArtifactPlan, target: str):
    """(prep, spec, added nodes) an artifact is built and checked with: the NMS model's when
    the artifact has NMS in its graph, else the build's own (and no nodes)."""
    if not wanted(plan, spec):
        return prep, spec, []
    return prepared(prep, spec, target, plan.backend)
