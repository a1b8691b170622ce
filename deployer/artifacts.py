"""Build one artifact with its backend (a worker stage, cached by its inputs) and verify it:
the manifest entry."""

from __future__ import annotations

import time
from pathlib import Path

from deployer import backends
from deployer.backends.base import Backend
from deployer.cache import copy_files
from deployer.hashing import artifact_sha256, sha256_of
from deployer.prepare import Prepared
from deployer.spec import ArtifactPlan, ModelSpec
from deployer.stages import attempt
from deployer.verification import verify_artifact


def _prebuilt(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, backend: Backend, target: str) -> str:
    """The folder of the backend's shared product for this artifact: made once per build
    (whichever artifact asks first; the others wait) and cached like any stage."""
    options = {o.name: plan.options.get(o.name, o.default) for o in backend.prebuild_options}
    key = prep.cache.key("prebuild", backend.prebuild, options, spec.to_dict(), prep.keys["onnx"], prep.keys["calib"])
    step = f"shared {backend.prebuild.rpartition(':')[2]}"

    def make(folder: Path) -> dict:
        # Many artifacts wait for it: it goes before any other waiting stage.
        return prep.stages.run(backend.prebuild, (target, "", step), backend.family_for(spec.source.kind), -100,
                               onnx_path=str(prep.onnx_path), spec=spec.to_dict(), options=options,
                               calibration=str(prep.calib_inputs), out_dir=str(folder)).value

    def shared():
        start = time.perf_counter()
        hit, reused = prep.cache.cached("prebuild", key, make)
        prep.add_step(target, step, start, reused)
        return hit

    return str(prep.once(key, shared).folder)


def _build(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, options: dict, stem: str, after: int):
    backend = backends.get(plan.backend)
    key = prep.cache.key("build", backend.build, plan.precision, options, spec.to_dict(), prep.keys["onnx"],
                         prep.keys["calib"], stem)

    def make(folder: Path) -> dict:
        extra = {"prebuilt": _prebuilt(prep, spec, plan, backend, target)} if backend.prebuild else {}
        built = prep.stages.run(backend.build, (target, plan.key, "build"), backend.family_for(spec.source.kind),
                                -(after + len(plan.runtimes) + 1), onnx_path=str(prep.onnx_path), spec=spec.to_dict(), precision=plan.precision,
                                options=options, out_dir=str(folder), stem=stem, calibration=str(prep.calib_inputs),
                                **extra)
        return {**built.value, "stage_seconds": round(built.seconds, 2)}

    # Two targets asking for the same artifact (android's and embedded's full-integer TFLite)
    # share one build: the first runs it, the other waits and copies the same bytes.
    first = []

    def once():
        first.append(True)
        return prep.cache.cached("build", key, make)

    hit, reused = prep.once(("build", key), once)
    return hit, reused or not first


def build_and_verify(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, out_dir: Path,
                     options: dict, after: int = 0) -> dict:
    """One build of an artifact into `out_dir` with `options`, and its parity: the entry's
    fields (status built with parity and step records, or failed with the error). `after`
    counts the stages that wait for this artifact (its target's demo page): it ranks this
    artifact's stages among those waiting for a core."""
    stem = f"{spec.name}_{plan.stem_suffix}"
    built, error = attempt(lambda: _build(prep, spec, target, plan, options, stem, after))
    if error:
        return {"status": "failed", "error": error}
    hit, reused = built
    if reused:
        prep.stages.progress.stage(target, plan.key, "build", "reused")
    info = hit.value
    copy_files(hit.folder, info["files"], out_dir)
    sha256 = artifact_sha256(out_dir, info["files"])
    entry = {"path": f"{target}/{info['path']}", "files": [f"{target}/{f}" for f in info["files"]],
             "format": info["format"], "sha256": sha256,
             # Per file too, so that verify names the one that changed (an IR's .bin, a shard).
             **({"file_sha256": {f"{target}/{f}": sha256_of(out_dir / f) for f in info["files"]}}
                if len(info["files"]) > 1 else {}),
             "size_bytes": sum((out_dir / f).stat().st_size for f in info["files"]),
             "status": "built", "notes": info.get("notes", [])}
    for key in ("quantization", "memory"):   # memory: flash and RAM of firmware artifacts (backends/tflm.py)
        if key in info:
            entry[key] = info[key]
    if info.get("decode"):   # outputs before the head's decoding, which is this file (ir/split.py)
        entry["decode"] = f"{target}/{info['decode']}"
    entry["parity"], runs = verify_artifact(prep, spec, plan, out_dir / info["path"], sha256, target, after=after,
                                            decode=out_dir / info["decode"] if info.get("decode") else None)
    entry["stages"] = [{"step": "build", "seconds": 0.0 if reused else info["stage_seconds"], "reused": reused}, *runs]
    return entry
