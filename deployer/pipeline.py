"""Plan and run a build: source -> ONNX -> backend -> artifact -> runtime -> parity -> manifest.

Every stage that touches an ML framework runs through `worker.run_stage` in a child
process; this module only moves files, numpy arrays and JSON. Each target is built in a
staging folder and moved into `dist/<model>/<target>/` only when all of its artifacts were
built and none failed its parity verdict; a rejected build goes to `.rejected/<target>/` for
inspection and a previous good build stays in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deployer import __version__, toolchain
from deployer.backends import builder_for
from deployer.errors import StageError, UserError
from deployer.inputs import load_dataset, prepare_inputs
from deployer.parity.compare import EvalSet, compare
from deployer.parity.verdict import ORDER
from deployer.quantize import fallback
from deployer.report.manifest import load_manifest, merge_manifest, write_manifest
from deployer.spec import ArtifactPlan, ModelSpec, TargetProfile
from deployer.worker import run_stage

FRONTENDS = {"torch": "deployer.frontends.torch:lower", "onnx": "deployer.frontends.onnx:lower",
             "tensorflow": "deployer.frontends.tensorflow:lower"}
REFERENCE_RUNTIME = {"torch": "torch", "onnx": "onnxruntime", "tensorflow": "tensorflow"}


@dataclass
class BuildOptions:
    out: Path
    jobs: int = 2
    timeout: float = 1800.0
    use_cache: bool = True
    worker_env: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """What every target of one build shares: the ONNX intermediate, inputs and reference outputs."""

    model_dir: Path
    work: Path
    onnx_path: Path
    onnx_info: dict
    eval_inputs: Path
    calib_inputs: Path
    reference: dict[str, np.ndarray]
    evalset: EvalSet
    source_sha256: str
    stage_seconds: dict


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def artifact_sha256(root: Path, files: list[str]) -> str:
    """One file's own sha256; for a multi-file artifact (IR .xml + .bin, TF.js shards), the
    sha256 of the files' names and contents in order, so a change to any of them shows."""
    if len(files) == 1:
        return sha256_of(root / files[0])
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(Path(f).name.encode())
        h.update(sha256_of(root / f).encode())
    return h.hexdigest()


def source_sha256(spec: ModelSpec) -> str:
    if spec.source.path:
        return sha256_of(spec.source.path)
    # A factory's identity is its weights plus the code that builds it: hash the factory
    # module's file when it can be found without importing it.
    h = hashlib.sha256(spec.source.factory.encode())
    if spec.source.weights:
        h.update(sha256_of(spec.source.weights).encode())
    module = spec.source.factory.split(":")[0].replace(".", "/") + ".py"
    for folder in [*spec.source.python_path, str(Path(spec.path).parent), os.getcwd()]:
        candidate = Path(folder) / module
        if candidate.is_file():
            h.update(candidate.read_bytes())
            break
    return h.hexdigest()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached_stage(cache: Path, func: str, kwargs: dict, opts: BuildOptions, work: Path, name: str):
    """Run a stage unless its JSON result for the same key is already cached."""
    if opts.use_cache and cache.is_file():
        return json.loads(cache.read_text()), 0.0
    result = run_stage(func, kwargs, workdir=work / "logs", name=name, timeout=opts.timeout, env=opts.worker_env)
    cache.write_text(json.dumps(result.value))
    return result.value, result.seconds


def prepare(spec: ModelSpec, opts: BuildOptions, calibration: str = "", evaluation: str = "") -> Prepared:
    model_dir = opts.out / spec.name
    work = model_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    tools = toolchain.versions()
    src_sha = source_sha256(spec)
    seconds = {}

    lower_key = _key(src_sha, spec.to_dict(), tools)
    onnx_path = work / f"{spec.name}.{lower_key}.onnx"
    func = FRONTENDS.get(spec.source.kind)
    if func is None:
        raise UserError(f"{spec.path}: field 'source.kind': the '{spec.source.kind}' frontend is not available yet "
                        f"(available: {', '.join(FRONTENDS)})")
    cache = onnx_path.with_suffix(".json")
    if not onnx_path.is_file():
        cache.unlink(missing_ok=True)
    onnx_info, seconds["lower"] = _cached_stage(
        cache, func, {"spec": spec.to_dict(), "out_path": str(onnx_path), "source_sha256": src_sha,
                      "toolchain": tools}, opts, work, "lower")

    eval_data = load_dataset(evaluation or spec.data.evaluation, spec, "evaluation")
    calib_data = load_dataset(calibration or spec.data.calibration, spec, "calibration")
    eval_inputs, calib_inputs = work / "eval_inputs.npz", work / "calib_inputs.npz"
    evalset = prepare_inputs(eval_data, spec, spec.data.evaluation_images, eval_inputs, with_labels=True)
    prepare_inputs(calib_data, spec, spec.data.calibration_images, calib_inputs, with_labels=False)

    ref_key = _key(lower_key, sha256_of(eval_inputs))
    ref_path = work / f"reference.{ref_key}.npz"
    cache = ref_path.with_suffix(".json")
    if not ref_path.is_file():
        cache.unlink(missing_ok=True)
    _, seconds["reference"] = _cached_stage(
        cache, "deployer.runtimes.run:run_inputs",
        {"runtime": REFERENCE_RUNTIME[spec.source.kind], "artifact": spec.source.path, "spec": spec.to_dict(),
         "inputs": str(eval_inputs), "outputs": str(ref_path), "options": {}}, opts, work, "reference")
    reference = dict(np.load(ref_path))
    return Prepared(model_dir, work, onnx_path, onnx_info, eval_inputs, calib_inputs, reference, evalset,
                    src_sha, seconds)


def _expected_shapes(prep: Prepared) -> dict:
    return {o["name"]: o["shape"] for o in prep.onnx_info["outputs"]}


def verify_artifact(prep: Prepared, spec: ModelSpec, plan: ArtifactPlan, artifact: Path, opts: BuildOptions,
                    tag: str) -> tuple[dict, float]:
    """Run one artifact in each of its runtimes over the evaluation inputs and judge parity.

    With several runtimes (web artifacts: Node and Chromium) every run is kept in `runs`
    and the top level holds the worst of them (DESIGN.md §4).
    """
    runs, seconds = [], 0.0
    for runtime in plan.runtimes:
        outputs = prep.work / f"outputs.{tag}.{runtime}.npz"
        options = {**plan.options.get("runtime", {}), "expected_outputs": _expected_shapes(prep)}
        try:
            run = run_stage("deployer.runtimes.run:run_inputs",
                            {"runtime": runtime, "artifact": str(artifact), "spec": spec.to_dict(),
                             "inputs": str(prep.eval_inputs), "outputs": str(outputs), "options": options},
                            workdir=prep.work / "logs", name=f"verify-{tag}-{runtime}", timeout=opts.timeout,
                            env=opts.worker_env)
        except (StageError, UserError) as exc:
            runs.append({"runtime": runtime, "verdict": "fail", "reasons": [f"verification failed: {exc}"]})
            continue
        seconds += run.seconds
        if run.value.get("unverified"):
            runs.append({"runtime": runtime, "verdict": "unverified", "reasons": [run.value["unverified"]]})
            continue
        try:
            runs.append(compare(prep.reference, dict(np.load(outputs)), spec, prep.evalset, plan.thresholds,
                                plan.warn_only, runtime, run.value["settings"]))
        except (ValueError, KeyError) as exc:  # outputs missing or of the wrong shape: this run fails
            runs.append({"runtime": runtime, "verdict": "fail", "reasons": [f"outputs do not match the source: {exc}"]})
    if len(runs) == 1:
        return runs[0], seconds
    worst_run = min(runs, key=lambda r: (ORDER.index(r["verdict"]), _worst_cosine(r)))
    return {**worst_run, "runs": runs}, seconds


def _worst_cosine(parity: dict) -> float:
    return min((o["cosine"] for o in parity.get("outputs", {}).values()), default=-1.0)


def _build_and_verify(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, staging: Path,
                      opts: BuildOptions, options: dict) -> dict:
    """One build of an artifact and its verification; the manifest entry fields."""
    stem = f"{spec.name}_{plan.stem_suffix}"
    tag = f"{target}-{plan.key}"
    try:
        func = builder_for(plan.backend, plan.precision)
        built = run_stage(func, {"onnx_path": str(prep.onnx_path), "spec": spec.to_dict(),
                                 "precision": plan.precision, "options": options, "out_dir": str(staging),
                                 "stem": stem, "calibration": str(prep.calib_inputs)},
                          workdir=prep.work / "logs", name=f"build-{tag}", timeout=opts.timeout,
                          env=opts.worker_env)
    except (StageError, UserError) as exc:
        return {"status": "failed", "error": str(exc)}
    info = built.value
    primary = staging / info["path"]
    entry = {"path": f"{target}/{info['path']}", "files": [f"{target}/{f}" for f in info["files"]],
             "format": info["format"], "sha256": artifact_sha256(staging, info["files"]),
             "size_bytes": sum((staging / f).stat().st_size for f in info["files"]),
             "status": "built", "notes": info.get("notes", []),
             "build_seconds": {"build": round(built.seconds, 2)}}
    if "quantization" in info:
        entry["quantization"] = info["quantization"]
    # verify_artifact turns a runtime's failure into a failed run of its own.
    entry["parity"], seconds = verify_artifact(prep, spec, plan, primary, opts, tag)
    entry["build_seconds"]["verify"] = round(seconds, 2)
    return entry


def build_artifact(prep: Prepared, spec: ModelSpec, target: str, plan: ArtifactPlan, staging: Path,
                   opts: BuildOptions) -> dict:
    head = {"target": target, "backend": plan.backend, "precision": plan.precision}
    if plan.variant:
        head["variant"] = plan.variant
    entry = _build_and_verify(prep, spec, target, plan, staging, opts, plan.options)
    if (entry["status"] == "built" and entry["parity"]["verdict"] == "fail" and plan.precision == "int8"
            and plan.backend in fallback.BACKENDS and "outputs" in entry["parity"]):  # measured, not crashed
        entry = fallback.fallback(prep, spec, target, plan, staging, opts, entry, _build_and_verify)
    return {**head, **entry}


def _replace_dir(staging: Path, final: Path) -> None:
    """Swap `staging` in for `final`: two renames on one filesystem, old copy removed last."""
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


PAGE_SAMPLES = 3


def check_demo_page(prep: Prepared, spec: ModelSpec, target: str, entries: list[dict], staging: Path,
                    opts: BuildOptions) -> dict:
    """Write the web demo page, run it in headless Chromium on sample images and compare the
    boxes it draws with the reference model's; the screenshot stays in the target folder."""
    from deployer.parity.page import compare_page, reference_detections
    from deployer.report.web_page import write_page

    samples = [Path(p) for p in prep.evalset.paths[:PAGE_SAMPLES]]
    try:
        urls = write_page(staging, spec, entries, samples)
        if not urls:
            return {"verdict": "unverified", "reasons": ["no web artifact to show on the page"]}
        result = run_stage("deployer.runtimes.js:check_page",
                           {"page_dir": str(staging), "screenshot": str(staging / "demo.png")},
                           workdir=prep.work / "logs", name=f"page-{target}", timeout=opts.timeout,
                           env=opts.worker_env).value
    except (StageError, UserError) as exc:
        return {"verdict": "fail", "reasons": [f"demo page: {exc}"]}
    reference = reference_detections(prep.reference, spec, [str(p) for p in samples])
    page = compare_page(result["results"], reference, dict(zip(urls, map(str, samples))), spec.head.score_threshold)
    page.update({"screenshot": f"{target}/demo.png", "browser": result["browser"], "page_errors": result["errors"],
                 "samples": urls})
    return page


def build_target(prep: Prepared, spec: ModelSpec, profile: TargetProfile, opts: BuildOptions) -> tuple[list, dict]:
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{profile.name}-", dir=prep.model_dir))
    try:
        entries = [build_artifact(prep, spec, profile.name, plan, staging, opts) for plan in profile.artifacts]
        ok = all(e["status"] == "built" and e["parity"]["verdict"] != "fail" for e in entries)
        page = None
        if profile.page and spec.head.type == "boxes_scores":
            page = check_demo_page(prep, spec, profile.name, entries, staging, opts)
            ok = ok and page["verdict"] != "fail"
        (staging / "deployer.json").write_text(json.dumps({
            "model": spec.name, "labels": spec.labels, "inputs": spec.to_dict()["inputs"],
            "preprocess": spec.to_dict()["preprocess"], "head": spec.to_dict()["head"],
            "artifacts": [{k: e[k] for k in ("backend", "precision", "path") if k in e} for e in entries]},
            indent=2))
        final = prep.model_dir / (profile.name if ok else f".rejected/{profile.name}")
        final.parent.mkdir(parents=True, exist_ok=True)
        if not ok:
            for e in entries:
                if "path" in e:
                    e["path"] = f".rejected/{e['path']}"
                    e["files"] = [f".rejected/{f}" for f in e["files"]]
        _replace_dir(staging, final)
        status = {"status": "built" if ok else "failed", "profile": profile.path,
                  "kept_previous_build": (not ok) and (prep.model_dir / profile.name).is_dir()}
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
        futures = {p.name: pool.submit(build_target, prep, spec, p, opts) for p in profiles}
        for name, fut in futures.items():
            results[name] = fut.result()
            if on_target_done:
                on_target_done(name, results[name])
    new = {
        "model": spec.name,
        "spec": spec.path,
        "source": {"path": spec.source.path or spec.source.factory, "kind": spec.source.kind,
                   "weights": spec.source.weights or None, "sha256": prep.source_sha256},
        "toolchain": toolchain.versions(),
        "deployer": __version__,
        "onnx": {k: prep.onnx_info.get(k) for k in ("opset", "exporter", "exporter_note", "source_form",
                                                    "simplify", "ops", "inputs", "outputs")},
        "evaluation": {"images": prep.evalset.images, "skipped": prep.evalset.skipped,
                       "labelled": prep.evalset.ground_truth is not None},
        "stage_seconds": {k: round(v, 2) for k, v in prep.stage_seconds.items()},
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    manifest = merge_manifest(load_manifest(prep.model_dir), new, results)
    write_manifest(prep.model_dir, manifest)
    return manifest


def exit_status(manifest: dict, targets: list[str]) -> int:
    entries = [a for a in manifest["artifacts"] if a["target"] in targets]
    bad = any(a["status"] == "failed" or a.get("parity", {}).get("verdict") == "fail" for a in entries)
    return 1 if bad or not entries else 0
