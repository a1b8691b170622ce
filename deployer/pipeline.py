"""Plan and run a build: source -> ONNX -> backend -> artifact -> runtime -> parity -> manifest
(docs/ARCHITECTURE.md, "Stages").

The parent process only moves files, numpy arrays and JSON: `prepare` makes what every
target shares, `artifacts.build_and_verify` makes and checks one artifact (with the INT8
fallback where it misses its thresholds), `staging` lands each target atomically, and
the manifest records what is in `dist/`.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

from deployer import __version__, backends, toolchain
from deployer.artifacts import build_and_verify
from deployer.parity.compare import detects
from deployer.parity.page import check_demo_page
from deployer.prepare import Prepared, prepare
from deployer.quantize import fallback
from deployer.report.manifest import build_record, load_manifest, merge_manifest, write_manifest
from deployer.spec import ArtifactPlan, ModelSpec, TargetProfile
from deployer.stages import BuildOptions
from deployer.staging import land, new_staging


def build_artifact(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, staging) -> dict:
    head = {"target": target, "backend": plan.backend, "precision": plan.precision}
    if plan.variant:
        head["variant"] = plan.variant
    entry = build_and_verify(prep, spec, target, plan, staging, plan.options)
    if (entry["status"] == "built" and entry["parity"]["verdict"] == "fail" and plan.precision == "int8"
            and backends.get(plan.backend).keeps_float and "outputs" in entry["parity"]):  # measured, not crashed
        entry = fallback.fallback(prep, spec, target, plan, staging, entry)
    return {**head, **entry}


def build_target(prep: Prepared, spec: ModelSpec, profile: TargetProfile) -> tuple[list, dict]:
    staging = new_staging(prep.model_dir, profile.name)
    try:
        entries = [build_artifact(prep, spec, profile.name, plan, staging) for plan in profile.artifacts]
        ok = all(e["status"] == "built" and e["parity"]["verdict"] != "fail" for e in entries)
        page = None
        if profile.page and detects(spec):
            page = check_demo_page(prep, spec, profile.name, entries, staging)
            ok = ok and page["verdict"] != "fail"
        d = spec.to_dict()
        (staging / "deployer.json").write_text(json.dumps({
            "model": spec.name, "labels": spec.labels, "inputs": d["inputs"], "preprocess": d["preprocess"],
            "head": d["head"], "artifacts": [{k: e[k] for k in ("backend", "precision", "path") if k in e}
                                             for e in entries]}, indent=2))
        kept = land(staging, prep.model_dir, profile.name, ok, entries)
        status = {"status": "built" if ok else "failed", "profile": profile.path, "kept_previous_build": kept}
        if page is not None:
            status["page"] = page
        return entries, status
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build(spec: ModelSpec, profiles: list[TargetProfile], opts: BuildOptions, calibration: str = "",
          evaluation: str = "", on_target_done=None) -> dict:
    start = time.perf_counter()
    prep = prepare(spec, opts, calibration, evaluation)
    results: dict[str, tuple] = {}
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        futures = {p.name: pool.submit(build_target, prep, spec, p) for p in profiles}
        for name, fut in futures.items():
            results[name] = fut.result()
            if on_target_done:
                on_target_done(name, results[name])
    record = build_record(spec, prep, toolchain.versions(), __version__, time.perf_counter() - start)
    manifest = merge_manifest(load_manifest(prep.model_dir), record, results)
    write_manifest(prep.model_dir, manifest)
    return manifest


def exit_status(manifest: dict, targets: list[str]) -> int:
    entries = [a for a in manifest["artifacts"] if a["target"] in targets]
    bad = any(a["status"] == "failed" or a.get("parity", {}).get("verdict") == "fail" for a in entries)
    return 1 if bad or not entries else 0
