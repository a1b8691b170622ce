"""Verify one artifact: run it in each of its runtimes over the evaluation inputs (a worker
stage per runtime, measuring there) and judge each run against the thresholds here
(docs/ARCHITECTURE.md, "Parity"). Runs are cached by what they depend on, so a changed
threshold re-judges without running anything."""

from __future__ import annotations

from pathlib import Path

from deployer import stages as stage_names
from deployer.errors import CannotVerify
from deployer.parity.compare import detects, judged
from deployer.parity.verdict import CHECKS, worst_run
from deployer.prepare import Prepared
from deployer.runtimes import get as runtime_of
from deployer.spec import GRAPH_NMS_THRESHOLDS, RAW_HEAD_THRESHOLDS, ArtifactPlan, ModelSpec
from deployer.stages import attempt


def thresholds_for(plan: ArtifactPlan, spec: ModelSpec) -> dict:
    """The plan's thresholds; for a raw head without a tensor threshold, the raw-head default
    of its precision (spec.RAW_HEAD_THRESHOLDS), so it is judged rather than unverified."""
    tensor = {k for k, (where, _, _) in CHECKS.items() if where == "outputs"}
    if spec.head.params.get("graph_nms"):
        # Finished detections have no raw tensors to compare: the detection thresholds the
        # profile set for the artifact, else the graph-NMS defaults of its precision.
        own = {k: v for k, v in plan.profile_thresholds.items() if k not in tensor}
        return own or dict(GRAPH_NMS_THRESHOLDS.get(plan.precision, {}))
    if detects(spec) or tensor & set(plan.thresholds):
        return plan.thresholds
    return {**plan.thresholds, **RAW_HEAD_THRESHOLDS.get(plan.precision, {})}


def run_key(prep: Prepared, spec: ModelSpec, runtime: str, settings: dict, artifact_sha256: str) -> str:
    return prep.cache.key("run", runtime, artifact_sha256, settings, prep.keys["eval"], prep.keys["reference"],
                          spec.head.to_dict(), spec.outputs, prep.expected_outputs)


def _run(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, runtime: str, artifact: Path, sha256: str,
         target: str, rerun: bool, priority: float, decode: Path | None) -> tuple[dict, dict]:
    """One runtime's run and its parity verdict (a runtime's failure is a failed run), and
    its step record for the manifest."""
    step = f"verify {runtime}"

    def make(folder: Path) -> dict:
        ran = prep.stages.run(
            stage_names.RUN_INPUTS, (target, plan.key, step), runtime_of(runtime).family, priority, runtime=runtime,
            artifact=str(artifact), spec=spec.to_dict(), inputs=str(prep.eval_inputs),
            outputs=str(folder / "outputs.npz"), settings=plan.runtime_settings,
            expected_outputs=prep.expected_outputs, reference=prep.reference_files, decode=str(decode or ""))
        return {**ran.value, "stage_seconds": round(ran.seconds, 2)}

    key = run_key(prep, spec, runtime, plan.runtime_settings, sha256)
    try:
        ran, error = attempt(lambda: prep.cache.cached("run", key, make, reuse=not rerun))
    except CannotVerify as exc:   # cannot be executed here: the verdict must say so, never pass
        return ({"runtime": runtime, "verdict": "unverified", "reasons": [str(exc)]},
                {"step": step, "seconds": 0.0, "reused": False})
    if error:
        return ({"runtime": runtime, "verdict": "fail", "reasons": [f"verification failed: {error}"]},
                {"step": step, "seconds": 0.0, "reused": False})
    (hit, reused) = ran
    if reused:
        prep.stages.progress.stage(target, plan.key, step, "reused")
    value = hit.value
    parity = judged(value["metrics"], thresholds_for(plan, spec), plan.warn_only, runtime, value["settings"],
                    value["images"])
    return parity, {"step": step, "seconds": 0.0 if reused else value["stage_seconds"], "reused": reused}


def verify_artifact(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, artifact: Path, sha256: str,
                    target: str, rerun: bool = False, after: int = 0,
                    decode: Path | None = None) -> tuple[dict, list[dict]]:
    """Parity of one artifact in each of its runtimes, and the runs' step records; `rerun`
    runs even where a cached run exists; `decode` is the float decoding that follows an
    artifact of pre-decode outputs (`sha256` covers it: it is one of the artifact's files). With several runtimes (web artifacts: Node and
    Chromium) every run is kept in `runs` and the top level is the worst of them."""
    runs, steps = [], []
    for i, runtime in enumerate(plan.runtimes):
        parity, step = _run(prep, spec, plan, runtime, artifact, sha256, target, rerun,
                            -(after + len(plan.runtimes) - i), decode)
        runs.append(parity)
        steps.append(step)
    if len(runs) == 1:
        return runs[0], steps
    return {**worst_run(runs), "runs": runs}, steps
