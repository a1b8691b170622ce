"""Re-running built artifacts from a manifest: `deployer verify` (parity, sha256 checked),
`deployer verify --layers` (per-layer SQNR) and `deployer bench` (latency and size)."""

from __future__ import annotations

from pathlib import Path

from deployer.errors import StageError, UserError
from deployer.pipeline import BuildOptions, artifact_sha256, prepare, verify_artifact
from deployer.report.manifest import write_manifest
from deployer.spec import TargetProfile, load_model_spec, load_target_profile
from deployer.worker import run_stage


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


def verify(model_dir: Path, manifest: dict, opts: BuildOptions) -> dict:
    """Re-run parity of every built artifact of a manifest against the current source model."""
    spec = load_model_spec(manifest["spec"])
    prep = prepare(spec, opts)
    for entry, plan in built_artifacts(model_dir, manifest):
        artifact = model_dir / entry["path"]
        tag = f"{entry['target']}-{plan.key}"
        files = [str(Path(f).relative_to(entry["target"])) for f in entry["files"]]
        if not all((model_dir / f).is_file() for f in entry["files"]) \
                or artifact_sha256(model_dir / entry["target"], files) != entry["sha256"]:
            entry["parity"] = {"runtime": plan.runtime, "verdict": "fail",
                               "reasons": [f"{artifact}: missing or changed since it was built (sha256 differs)"]}
            continue
        entry["parity"], _ = verify_artifact(prep, spec, plan, artifact, opts, tag)
    manifest["verified_source_sha256"] = prep.source_sha256
    write_manifest(model_dir, manifest)
    return manifest


def bench(model_dir: Path, manifest: dict, opts: BuildOptions, runs: int = 50, warmup: int = 10) -> dict:
    """Latency (1 thread and the runtime's default) of every built artifact, into the manifest."""
    work = model_dir / ".work"
    inputs = work / "eval_inputs.npz"
    if not inputs.is_file():
        raise UserError(f"{inputs}: missing; rebuild with 'deployer build' first")
    spec = load_model_spec(manifest["spec"])
    for entry, plan in built_artifacts(model_dir, manifest):
        try:
            result = run_stage("deployer.runtimes.bench:bench",
                               {"runtime": plan.runtime, "artifact": str(model_dir / entry["path"]),
                                "spec": spec.to_dict(), "inputs": str(inputs), "options": plan.options.get("runtime", {}),
                                "warmup": warmup, "runs": runs},
                               workdir=work / "logs", name=f"bench-{entry['target']}-{plan.key}", timeout=opts.timeout,
                               env=opts.worker_env).value
        except (StageError, UserError) as exc:
            entry["bench"] = {"error": str(exc)}
            continue
        one = result["threads_1"]
        entry["bench"] = {"runtime": plan.runtime, "latency_ms_median": one["latency_ms_median"],
                          "latency_ms_p90": one["latency_ms_p90"], "threads": 1, "runs": one["runs"],
                          "warmup": one["warmup"], "settings": one["settings"],
                          "threads_default": result["threads_default"], "size_bytes": entry["size_bytes"],
                          "build_seconds": entry.get("build_seconds", {})}
    write_manifest(model_dir, manifest)
    return manifest


LAYER_BACKENDS = ("onnx", "openvino")  # artifacts whose tensors keep the ONNX graph's names


def layer_report(model_dir: Path, manifest: dict, opts: BuildOptions, threshold_db: float = 30.0,
                 images: int = 16) -> dict:
    """Per-layer SQNR of each matchable artifact against the float ONNX graph, into the manifest."""
    from deployer.quantize.sensitivity import first_below
    spec = load_model_spec(manifest["spec"])
    prep = prepare(spec, opts)
    for entry, plan in built_artifacts(model_dir, manifest):
        if plan.backend not in LAYER_BACKENDS:
            entry["layers"] = {"available": False,
                               "reason": f"{plan.backend} artifacts do not keep the ONNX tensor names"}
            continue
        try:
            rows = run_stage("deployer.quantize.sensitivity:layer_errors",
                             {"float_onnx": str(prep.onnx_path), "artifact": str(model_dir / entry["path"]),
                              "backend": plan.backend, "spec": spec.to_dict(), "inputs": str(prep.eval_inputs),
                              "count": images},
                             workdir=prep.work / "logs", name=f"layers-{entry['target']}-{plan.key}",
                             timeout=opts.timeout, env=opts.worker_env).value
        except (StageError, UserError) as exc:
            entry["layers"] = {"available": False, "reason": str(exc)}
            continue
        worst = sorted((r for r in rows if r["drop_db"] is not None), key=lambda r: r["drop_db"], reverse=True)[:5]
        entry["layers"] = {"available": True, "threshold_db": threshold_db, "images": images,
                           "first_below": first_below(rows, threshold_db), "worst_drops": worst,
                           "tensors": len(rows)}
    write_manifest(model_dir, manifest)
    return manifest
