"""Build one artifact with its backend (a worker stage) and verify it: the manifest entry."""

from __future__ import annotations

from pathlib import Path

from deployer import backends
from deployer.hashing import artifact_sha256
from deployer.prepare import Prepared
from deployer.spec import ArtifactPlan, ModelSpec
from deployer.stages import attempt
from deployer.verification import verify_artifact


def build_and_verify(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, out_dir: Path,
                     options: dict) -> dict:
    """One build of an artifact into `out_dir` with `options`, and its parity: the entry's
    fields (status built with parity, or failed with the error)."""
    stem = f"{spec.name}_{plan.stem_suffix}"
    tag = f"{target}-{plan.key}"
    backend = backends.get(plan.backend)
    built, error = attempt(lambda: prep.stages.run(
        backend.build, f"build-{tag}", onnx_path=str(prep.onnx_path), spec=spec.to_dict(), precision=plan.precision,
        options=options, out_dir=str(out_dir), stem=stem, calibration=str(prep.calib_inputs)))
    if error:
        return {"status": "failed", "error": error}
    info = built.value
    entry = {"path": f"{target}/{info['path']}", "files": [f"{target}/{f}" for f in info["files"]],
             "format": info["format"], "sha256": artifact_sha256(out_dir, info["files"]),
             "size_bytes": sum((out_dir / f).stat().st_size for f in info["files"]),
             "status": "built", "notes": info.get("notes", []),
             "build_seconds": {"build": round(built.seconds, 2)}}
    if "quantization" in info:
        entry["quantization"] = info["quantization"]
    entry["parity"], seconds = verify_artifact(prep, spec, plan, out_dir / info["path"], tag)
    entry["build_seconds"]["verify"] = round(seconds, 2)
    return entry
