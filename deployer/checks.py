"""Re-running built artifacts from a manifest: `deployer verify` (parity, sha256 checked),
`deployer verify --layers` (per-layer SQNR) and `deployer bench` (latency and size)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from deployer import backends, graph_nms, runtimes, toolchain
from deployer import stages as stage_names
from deployer.errors import UserError
from deployer.hashing import artifact_sha256, sha256_of
from deployer.prepare import prepare
from deployer.quantize.sensitivity import first_below
from deployer.report import checksums
from deployer.report.publish import publish
from deployer.spec import TargetProfile, load_model_spec, load_target_profile
from deployer.stages import BuildOptions, attempt, thread_env
from deployer.verification import verify_artifact
from deployer.worker import WorkerPool


def built_artifacts(model_dir: Path, manifest: dict):
    """Yield (entry, plan) for every artifact of a manifest that stands in its target folder."""
    profiles: dict[str, TargetProfile] = {}
    for entry in manifest["artifacts"]:
        if entry["status"] != "built" or entry["path"].startswith(".rejected/") \
                or entry.get("superseded_by_failed_build"):
            continue
        target = entry["target"]
        if target not in profiles:
            profiles[target] = load_target_profile(manifest["targets"][target]["profile"])
        plan = next((p for p in profiles[target].artifacts if p.backend == entry["backend"]
                     and p.precision == entry["precision"] and p.variant == entry.get("variant", "")), None)
        if plan is None:
            raise UserError(f"{profiles[target].path}: no artifact {entry['backend']} {entry['precision']} any more; "
                            f"rebuild target '{target}'")
        yield entry, plan


@contextmanager
def _prepared(model_dir: Path, manifest: dict, opts: BuildOptions, jobs: int | None = None):
    """The current source model's preparation (cached where unchanged) and a worker pool."""
    spec = load_model_spec(manifest["spec"])
    pool = WorkerPool(jobs or opts.jobs, model_dir / ".work" / "logs",
                      {**thread_env(jobs or opts.jobs), **opts.worker_env}, runtimes.spread_families())
    try:
        yield spec, prepare(spec, opts, pool=pool)
    finally:
        pool.close()


def verify(model_dir: Path, manifest: dict, opts: BuildOptions) -> dict:
    """Re-run parity of every built artifact of a manifest, in its runtimes (never from the
    cache: that is what verifying means), against the current source model."""
    with _prepared(model_dir, manifest, opts) as (spec, prep):
        _verify_all(model_dir, manifest, spec, prep)
    manifest["verified_source_sha256"] = prep.source_sha256
    manifest["verified_on"] = toolchain.host()   # where these figures were measured again
    publish(model_dir, manifest)
    return manifest


def _verify_all(model_dir: Path, manifest: dict, spec, prep) -> None:
    for entry, plan in built_artifacts(model_dir, manifest):
        artifact = model_dir / entry["path"]
        files = [str(Path(f).relative_to(entry["target"])) for f in entry["files"]]
        missing = [f for f in entry["files"] if not (model_dir / f).is_file()]
        if missing or artifact_sha256(model_dir / entry["target"], files) != entry["sha256"]:
            changed = [f for f, sha in entry.get("file_sha256", {}).items()
                       if f not in missing and sha256_of(model_dir / f) != sha]
            culprit = (f"missing: {', '.join(str(model_dir / f) for f in missing)}" if missing else
                       f"changed since it was built (sha256 differs): {', '.join(str(model_dir / f) for f in changed)}"
                       if changed else f"{artifact}: changed since it was built (sha256 differs)")
            entry["parity"] = {"runtime": plan.runtime, "verdict": "fail", "reasons": [culprit]}
            continue
        made, error = attempt(lambda: graph_nms.for_plan(prep, spec, plan, entry["target"]))
        if error:
            entry["parity"] = {"runtime": plan.runtime, "verdict": "fail", "reasons": [error]}
            continue
        own_prep, own_spec, _ = made
        entry["parity"], _ = verify_artifact(own_prep, own_spec, plan, artifact, entry["sha256"], entry["target"],
                                             rerun=True, decode=_decode_of(model_dir, entry))


def _decode_of(model_dir: Path, entry: dict) -> Path | None:
    """The float decoding that follows an artifact of pre-decode outputs, if it is one."""
    return model_dir / entry["decode"] if entry.get("decode") else None


def bench(model_dir: Path, manifest: dict, opts: BuildOptions, runs: int = 50, warmup: int = 10) -> dict:
    """Latency (1 thread and the runtime's default) of every built artifact, into the manifest."""
    work = model_dir / ".work"
    inputs = work / "eval_inputs.npz"
    if not inputs.is_file():
        raise UserError(f"{inputs}: missing; rebuild with 'deployer build' first")
    # Latency of a file that is not the one verified would be reported beside its verdict.
    changed = list(checksums.changed(model_dir, manifest))
    if changed:
        raise UserError(f"{model_dir}: {', '.join(changed[:5])} changed or missing since the build verified them; "
                        "rebuild them ('deployer verify' names what changed) before benching")
    spec = load_model_spec(manifest["spec"])
    # One stage at a time: timings taken while another stage computes would be noise.
    pool = WorkerPool(1, work / "logs", opts.worker_env)
    try:
        benched = _bench_all(model_dir, manifest, spec, opts.stages(work, pool), inputs, runs, warmup)
    finally:
        pool.close()
    if not benched:
        failed = sorted(t for t, v in manifest.get("targets", {}).items() if v.get("status") == "failed")
        raise UserError(f"{model_dir / 'manifest.json'}: no built artifact to bench"
                        + (f" (target(s) {', '.join(failed)} failed; their files are in .rejected/): fix and "
                           "rebuild them first" if failed else "; build a target first"))
    publish(model_dir, manifest)
    return manifest


def _bench_all(model_dir: Path, manifest: dict, spec, stages, inputs: Path, runs: int, warmup: int) -> int:
    """Bench every built artifact into its manifest entry; returns how many there were."""
    count = 0
    for entry, plan in built_artifacts(model_dir, manifest):
        count += 1
        result, error = attempt(lambda: stages.run(
            stage_names.BENCH, (entry["target"], plan.key, "bench"), runtimes.get(plan.runtime).family,
            runtime=plan.runtime, artifact=str(model_dir / entry["path"]),
            spec=(graph_nms.derived_for(spec, plan.backend) if graph_nms.wanted(plan, spec) else spec).to_dict(),
            inputs=str(inputs),
            settings=plan.runtime_settings, warmup=warmup, runs=runs, decode=str(_decode_of(model_dir, entry) or "")))
        if error:
            entry["bench"] = {"error": error}
            continue
        one = result.value["threads_1"]
        entry["bench"] = {"runtime": plan.runtime, "latency_ms_median": one["latency_ms_median"],
                          "latency_ms_p90": one["latency_ms_p90"], "threads": 1, "runs": one["runs"],
                          "warmup": one["warmup"], "settings": one["settings"],
                          "threads_default": result.value["threads_default"], "size_bytes": entry["size_bytes"],
                          "build_seconds": round(sum(s["seconds"] for s in entry.get("stages", [])), 2)}
    return count


def layer_report(model_dir: Path, manifest: dict, opts: BuildOptions, threshold_db: float = 30.0,
                 images: int = 16) -> dict:
    """Per-layer SQNR of each artifact whose backend keeps ONNX tensor names, into the manifest."""
    with _prepared(model_dir, manifest, opts) as (spec, prep):
        _layers_all(model_dir, manifest, spec, prep, threshold_db, images)
    publish(model_dir, manifest)
    return manifest


def _layers_all(model_dir: Path, manifest: dict, spec, prep, threshold_db: float, images: int) -> None:
    for entry, plan in built_artifacts(model_dir, manifest):
        backend = backends.get(plan.backend)
        if backend.layer_outputs is None:
            entry["layers"] = {"available": False,
                               "reason": f"{plan.backend} artifacts do not keep the ONNX tensor names"}
            continue
        def analyse():
            own_prep, own_spec, _ = graph_nms.for_plan(prep, spec, plan, entry["target"])
            return own_prep.stages.run(
                stage_names.LAYER_ERRORS, (entry["target"], plan.key, "layer analysis"),
                backend.family_for(own_spec.source.kind), float_onnx=str(own_prep.onnx_path),
                artifact=str(model_dir / entry["path"]), backend=plan.backend, spec=own_spec.to_dict(),
                inputs=str(own_prep.eval_inputs), count=images)

        rows, error = attempt(analyse)
        if error:
            entry["layers"] = {"available": False, "reason": error}
            continue
        rows = rows.value
        worst = sorted(rows, key=lambda r: r["drop_db"], reverse=True)[:5]
        entry["layers"] = {"available": True, "threshold_db": threshold_db, "images": images,
                           "first_below": first_below(rows, threshold_db), "worst_drops": worst,
                           "tensors": len(rows)}
