"""Plan and run a build: source -> ONNX -> backend -> artifact -> runtime -> parity -> manifest
(docs/ARCHITECTURE.md, "Stages").

The parent process only moves files, numpy arrays and JSON: `prepare` makes what every
target shares, `artifacts.build_and_verify` makes and checks one artifact (with the INT8
fallback where it misses its thresholds), `staging` lands each target atomically, and
the manifest records what is in `dist/`. Every artifact of every target is a task of its
own; the worker pool runs at most `jobs` stages at once, in warm workers per framework.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployer import __version__, backends, graph_nms, runtimes, toolchain
from deployer import stages as stage_names
from deployer.artifacts import build_and_verify
from deployer.errors import Interrupted
from deployer.firmware import bundle
from deployer.parity.compare import detects
from deployer.parity.page import check_demo_page
from deployer.prepare import Prepared, prepare
from deployer.quantize import fallback
from deployer.report.manifest import build_record, check_manifest, load_manifest, merge_manifest
from deployer.report.publish import publish
from deployer.spec import ArtifactPlan, ModelSpec, TargetProfile
from deployer.stages import BuildOptions, attempt, thread_env
from deployer.staging import land, new_staging, remove_stale
from deployer.worker import WorkerPool


def build_artifact(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, staging, after: int) -> dict:
    head = {"target": target, "backend": plan.backend, "precision": plan.precision}
    if plan.verify != "required":
        head["verify"] = plan.verify
    if plan.variant:
        head["variant"] = plan.variant
    if graph_nms.wanted(plan, spec):
        head["nms"] = "graph"
    made, error = attempt(lambda: graph_nms.for_plan(prep, spec, plan, target))
    if error:
        prep.stages.progress.verdict(target, plan.key, "failed", error.splitlines()[0][:120])
        return {**head, "status": "failed", "error": error}
    prep, spec, added = made
    if added and plan.precision == "int8" and backends.get(plan.backend).keeps_float:
        # The decoding and NMS stay float: boxes in pixels and probabilities share no int8 scale.
        plan = dataclasses.replace(plan, options={**plan.options, "exclude": [*plan.options.get("exclude", []), *added]})
    entry = build_and_verify(prep, spec, target, plan, staging, plan.options, after)
    if (entry["status"] == "built" and entry["parity"]["verdict"] == "fail" and plan.precision == "int8"
            and backends.get(plan.backend).keeps_float and "outputs" in entry["parity"]):  # measured, not crashed
        entry = fallback.fallback(prep, spec, target, plan, staging, entry, after)
    if _stopping(prep):
        raise Interrupted(target)
    verdict = entry["parity"]["verdict"] if entry["status"] == "built" else "failed"
    prep.stages.progress.verdict(target, plan.key, verdict, "; ".join(entry.get("parity", {}).get("reasons", []))[:120]
                                 if entry["status"] == "built" else entry["error"].splitlines()[0][:120])
    return {**head, **entry}


def finish_target(prep: Prepared, spec: ModelSpec, profile: TargetProfile, staging, entries: list[dict]
                  ) -> tuple[list, dict]:
    """Once every artifact of a target is built and judged: the demo page, deployer.json,
    and the swap into dist/ (or .rejected/)."""
    ok = all(e["status"] == "built" and e["parity"]["verdict"] != "fail" for e in entries)
    page = None
    if profile.page and detects(spec):
        page = check_demo_page(prep, spec, profile.name, entries, staging)
        ok = ok and page["verdict"] != "fail"
    d = spec.to_dict()
    (staging / "deployer.json").write_text(json.dumps({
        "model": spec.name, "version": spec.version, "labels": spec.labels, "inputs": d["inputs"],
        "outputs": prep.expected_outputs, "preprocess": d["preprocess"], "head": d["head"],
        "artifacts": [{**{k: e[k] for k in ("backend", "precision", "path", "decode", "memory") if k in e},
                       **graph_nms.deployed(e, spec)} for e in entries]}, indent=2))
    if profile.bundle:   # embedded targets: the Python sample beside the artifacts (firmware/sample.py)
        shutil.copyfile(Path(bundle.__file__).with_name("sample.py"), staging / "infer.py")
        (staging / "infer.py").chmod(0o755)   # `./infer.py`, as in the bundle
    if _stopping(prep):   # interrupted while finishing (the demo page): nothing lands half-done
        raise Interrupted(profile.name)
    kept = land(staging, prep.model_dir, profile.name, ok, entries)
    status = {"status": "built" if ok else "failed", "profile": profile.path, "kept_previous_build": kept}
    if page is not None:
        status["page"] = page
    prep.stages.progress.target_done(profile.name, status["status"])
    return entries, status


def build(spec: ModelSpec, profiles: list[TargetProfile], opts: BuildOptions, calibration: str = "",
          evaluation: str = "", on_target_done=None) -> dict:
    start = time.perf_counter()
    graph_nms.check_plans(spec, profiles)
    model_dir = opts.out / spec.name
    previous = load_manifest(model_dir)   # checked now: a damaged one must not end the build after the work
    if previous is not None:
        check_manifest(model_dir / "manifest.json", previous)
    remove_stale(model_dir)   # what a killed build left behind
    pool = WorkerPool(opts.jobs, model_dir / ".work" / "logs",
                      {**thread_env(opts.jobs), **opts.worker_env}, runtimes.spread_families())
    stagings, landed, int8, prep = {}, {}, [], None
    try:
        prep = prepare(spec, opts, calibration, evaluation, pool,
                       warm_up=lambda: pool.prewarm(_families(spec, profiles), opts.timeout))
        stagings = {p.name: new_staging(prep.model_dir, p.name) for p in profiles}
        # A thread per artifact and per target, each waiting on its own stages: the pool bounds
        # the work, and a target lands as soon as its own artifacts are done. The INT8 checks
        # (lint, calibration coverage) run beside them, after every other waiting stage.
        artifacts = sum(len(p.artifacts) for p in profiles)
        with ThreadPoolExecutor(max(1, artifacts)) as artifact_threads, \
                ThreadPoolExecutor(max(1, len(profiles))) as target_threads, ThreadPoolExecutor(2) as checks:
            try:
                int8 = [] if not any(a.precision == "int8" for p in profiles for a in p.artifacts) else [
                    checks.submit(_check, prep, "int8 lint", stage_names.INT8_LINT, onnx_path=str(prep.onnx_path),
                                  inputs=str(prep.calib_inputs), names=[i.name for i in spec.inputs]),
                    checks.submit(_check, prep, "calibration coverage", stage_names.COVERAGE,
                                  onnx_path=str(prep.onnx_path), calibration=str(prep.calib_inputs),
                                  evaluation=str(prep.eval_inputs), names=[i.name for i in spec.inputs])]

                def run_target(profile: TargetProfile) -> tuple[list, dict]:
                    after = int(profile.page and detects(spec))   # the demo page waits for these artifacts
                    futures = [artifact_threads.submit(build_artifact, prep, spec, profile.name, plan,
                                                       stagings[profile.name], after) for plan in profile.artifacts]
                    entries = [f.result() for f in futures]
                    if _stopping(prep):   # interrupted: what was cut short must not land
                        raise Interrupted(profile.name)
                    landed[profile.name] = finish_target(prep, spec, profile, stagings[profile.name], entries)
                    return landed[profile.name]

                futures = {p.name: target_threads.submit(run_target, p) for p in profiles}
                for name, future in futures.items():
                    future.result()
                    if on_target_done:
                        on_target_done(name, landed[name])
                int8 = [f.result() for f in int8]
            except BaseException:
                # Ctrl-C or SIGTERM (cli.py): kill every worker's process group, so running
                # stages fail now and no new one starts; drop what is queued. Leaving the
                # executors then waits only for threads that are finishing.
                pool.abort()
                for executor in (artifact_threads, target_threads, checks):
                    executor.shutdown(wait=False, cancel_futures=True)
                raise
    except BaseException:
        if prep is not None and landed:
            # Targets that landed before the interrupt replaced their folders: the manifest
            # must say so, or dist/ and manifest.json disagree.
            _write(spec, prep, profiles, landed, [], start)
        raise
    finally:
        pool.close()
        for staging in stagings.values():
            shutil.rmtree(staging, ignore_errors=True)
    results = {p.name: landed[p.name] for p in profiles}
    return _write(spec, prep, profiles, results, int8, start)


def _write(spec: ModelSpec, prep: Prepared, profiles: list[TargetProfile], results: dict, int8: list,
           start: float) -> dict:
    """The manifest of what is in dist/ now (earlier targets kept), the bundles of the embedded
    targets that landed, the checksums and the reports."""
    record = build_record(spec, prep, toolchain.versions(), toolchain.host(), __version__, time.perf_counter() - start)
    if int8:
        record["int8_lint"], record["calibration_coverage"] = int8
    manifest = merge_manifest(load_manifest(prep.model_dir), record, results)
    for profile in profiles:   # the firmware bundle of each embedded target that landed
        if profile.bundle and results.get(profile.name, ([], {}))[1].get("status") == "built":
            bundle.write(prep.model_dir, profile.name, manifest, spec.version)
    publish(prep.model_dir, manifest)   # manifest.json, SHA256SUMS, report.html and report.md
    return manifest


def _check(prep: Prepared, step: str, stage: str, **kwargs) -> list | dict:
    """A build-wide INT8 check of the lowered model (the lint, the calibration coverage), once
    per build and cached: its value, or {"error": ...} when it could not run (it never fails
    a build)."""
    key = prep.cache.key("lint", stage, prep.keys["onnx"], prep.keys["calib"], prep.keys["eval"])
    start = time.perf_counter()
    found, error = attempt(lambda: prep.cache.cached("lint", key, lambda folder: prep.stages.run(
        stage, ("", "", step), "onnx", 1, **kwargs).value))
    if error:
        return {"error": error}
    hit, reused = found
    prep.add_step("", step, start, reused)
    return hit.value


def _families(spec: ModelSpec, profiles: list[TargetProfile]) -> list[tuple[str, tuple[str, ...]]]:
    """The worker families this build will use and what each will import: those with a shared
    conversion first (everything after waits for it), then in the order their work starts."""
    wanted: dict[str, list[str]] = {}
    plans = [plan for profile in profiles for plan in profile.artifacts]
    for plan in sorted(plans, key=lambda p: backends.get(p.backend).prebuild is None):
        backend = backends.get(plan.backend)
        declared = [(backend.family_for(spec.source.kind), backend.preload)]
        declared += [(runtimes.get(r).family, runtimes.get(r).preload) for r in plan.runtimes]
        for family, modules in declared:
            if family and modules:
                wanted.setdefault(family, [])
                wanted[family] += [m for m in modules if m not in wanted[family]]
    return [(family, tuple(modules)) for family, modules in wanted.items()]


def _stopping(prep: Prepared) -> bool:
    """Whether the build is being interrupted (WorkerPool.abort)."""
    pool = prep.stages.pool
    return pool is not None and pool.closed


def unverified(manifest: dict, targets: list[str]) -> list[dict]:
    """Built artifacts whose parity could not be measured and whose profile requires it."""
    return [a for a in manifest["artifacts"] if a["target"] in targets and a["status"] == "built"
            and a.get("parity", {}).get("verdict") == "unverified" and a.get("verify", "required") == "required"]


def exit_status(manifest: dict, targets: list[str], allow_unverified: bool = False) -> int:
    """1 when an artifact failed to build or to verify, or could not be verified (unless
    allowed: `--allow-unverified`, or `verify = "optional"` in its profile); else 0."""
    entries = [a for a in manifest["artifacts"] if a["target"] in targets]
    bad = any(a["status"] == "failed" or a.get("parity", {}).get("verdict") == "fail" for a in entries)
    # A target fails with every artifact passing when its demo page check failed.
    bad = bad or any((manifest.get("targets", {}).get(t, {}).get("page") or {}).get("verdict") == "fail"
                     for t in targets)
    if not allow_unverified and unverified(manifest, targets):
        bad = True
    return 1 if bad or not entries else 0
