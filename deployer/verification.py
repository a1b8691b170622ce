"""Verify one artifact: run it in each of its runtimes over the evaluation inputs (a worker
stage per runtime) and judge each run's outputs against the reference (docs/ARCHITECTURE.md,
"Parity")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deployer import stages as stage_names
from deployer.errors import CannotVerify
from deployer.parity.compare import compare
from deployer.parity.verdict import worst_run
from deployer.prepare import Prepared
from deployer.spec import ArtifactPlan, ModelSpec
from deployer.stages import attempt


def _run(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, runtime: str, artifact: Path,
         tag: str) -> tuple[dict, float]:
    """One runtime's run and its parity verdict; a runtime's failure is a failed run."""
    outputs = prep.work / f"outputs.{tag}.{runtime}.npz"
    try:
        run, error = attempt(lambda: prep.stages.run(
            stage_names.RUN_INPUTS, f"verify-{tag}-{runtime}", runtime=runtime, artifact=str(artifact),
            spec=spec.to_dict(), inputs=str(prep.eval_inputs), outputs=str(outputs),
            settings=plan.runtime_settings, expected_outputs=prep.expected_outputs))
    except CannotVerify as exc:   # cannot be executed here: the verdict must say so, never pass
        return {"runtime": runtime, "verdict": "unverified", "reasons": [str(exc)]}, 0.0
    if error:
        return {"runtime": runtime, "verdict": "fail", "reasons": [f"verification failed: {error}"]}, 0.0
    parity = compare(prep.reference, dict(np.load(outputs)), spec, prep.evalset, plan.thresholds, plan.warn_only,
                     runtime, run.value["settings"])
    return parity, run.seconds


def verify_artifact(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, artifact: Path,
                    tag: str) -> tuple[dict, float]:
    """Parity of one artifact in each of its runtimes. With several runtimes (web artifacts:
    Node and Chromium) every run is kept in `runs` and the top level is the worst of them."""
    runs, seconds = [], 0.0
    for runtime in plan.runtimes:
        parity, took = _run(prep, spec, plan, runtime, artifact, tag)
        runs.append(parity)
        seconds += took
    if len(runs) == 1:
        return runs[0], seconds
    return {**worst_run(runs), "runs": runs}, seconds
