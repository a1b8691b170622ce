"""What every target of a build shares, made once: the ONNX intermediate form, the
preprocessed calibration and evaluation inputs, and the reference (the source model run by
its own framework on the evaluation inputs, its detections decoded once)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deployer import stages as stage_names
from deployer import toolchain
from deployer.cache import Cache
from deployer.errors import StageError, UserError
from deployer.frontends import registry as frontends
from deployer.hashing import sha256_of, source_sha256
from deployer.heads import registry as heads
from deployer.inputs import load_dataset, prepare_inputs
from deployer.parity.compare import EvalSet, Reference
from deployer.runtimes import get as runtime
from deployer.spec import ModelSpec
from deployer.stages import BuildOptions, Stages


@dataclass
class Prepared:
    model_dir: Path
    work: Path
    onnx_path: Path
    onnx_info: dict
    eval_inputs: Path
    calib_inputs: Path
    reference: Reference
    reference_files: dict            # where a worker finds the same reference (parity in workers)
    evalset: EvalSet
    source_sha256: str
    stages: Stages
    cache: Cache
    keys: dict                       # content keys of the shared inputs: onnx, eval, calib, reference
    steps: list = field(default_factory=list)   # [{step, seconds, reused}] of the shared steps
    _once: dict = field(default_factory=dict)
    _once_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def expected_outputs(self) -> dict[str, list]:
        """The source model's output shapes: what every runtime's outputs must come back as."""
        return {o["name"]: o["shape"] for o in self.onnx_info["outputs"]}

    def add_step(self, target: str, step: str, start: float, reused: bool) -> None:
        """Record a shared step (the preparation's, or one made for several artifacts) for the
        manifest, and show a reused one."""
        with self._once_lock:
            record_step(self.steps, self.stages.progress, target, step, start, reused)

    def once(self, key: str, make: Callable):
        """`make()` once per key for the whole build, whichever thread asks first; the others
        wait for it and get its value, or its error (a failed shared step is not retried)."""
        with self._once_lock:
            slot = self._once.setdefault(key, {"lock": threading.Lock()})
        with slot["lock"]:
            if "value" not in slot and "error" not in slot:
                try:
                    slot["value"] = make()
                except (StageError, UserError) as exc:
                    slot["error"] = exc
            if "error" in slot:
                raise slot["error"]
            return slot["value"]


def _truth_key(evalset: EvalSet) -> str:
    if evalset.ground_truth is None:
        return "unlabelled"
    h = hashlib.sha256()
    for d in evalset.ground_truth:
        h.update(d.boxes.tobytes())
        h.update(d.labels.tobytes())
    return h.hexdigest()[:16]


def complete_head(spec: ModelSpec, lowered: dict, folder: Path) -> None:
    """Check the head against the lowered model's output shapes and fill what its type infers
    from them or what the frontend wrote (a recipe's anchors, files named relative to the
    lowered model's folder): every later stage and worker then decodes with the same head."""
    head_type = heads()[spec.head.type]
    if lowered.get("head"):
        lowered = {**lowered, "head": {k: str(folder / v) if k in head_type.paths else v
                                       for k, v in lowered["head"].items()}}
    if head_type.complete:
        shapes = {o["name"]: o["shape"] for o in lowered["outputs"]}
        try:
            spec.head.params = head_type.complete(dict(spec.head.params), shapes, spec.labels, lowered)
        except UserError as exc:
            raise UserError(f"{spec.path}: {exc}") from None


def head_files_key(spec: ModelSpec) -> str:
    """The content of the files the head reads (anchors): a changed file re-decodes."""
    files = [spec.head.params[k] for k in heads()[spec.head.type].paths if spec.head.params.get(k)]
    return hashlib.sha256("".join(sha256_of(f) for f in files).encode()).hexdigest()[:16]


def record_step(rows: list, progress, target: str, step: str, start: float, reused: bool) -> None:
    """A step's wall time and reuse for the manifest; a reused one is shown as such."""
    if reused:
        progress.stage(target, "", step, "reused")
    rows.append({"step": step, "seconds": round(time.perf_counter() - start, 2), "reused": reused})


def prepare(spec: ModelSpec, opts: BuildOptions, calibration: str = "", evaluation: str = "", pool=None,
            warm_up: Callable[[], None] | None = None) -> Prepared:
    """`warm_up` is called when the model has to be lowered (a cold build): the time the
    lowering takes is when the other workers can start and import their frameworks."""
    # The datasets are read (not decoded) before any stage: a missing, malformed or empty one
    # is a UserError before minutes of lowering.
    eval_data = load_dataset(evaluation or spec.data.evaluation, spec, "evaluation")
    calib_data = load_dataset(calibration or spec.data.calibration, spec, "calibration")
    model_dir = opts.out / spec.name
    work = model_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    stages = opts.stages(work, pool)
    cache = Cache(work / "cache", read=opts.use_cache)
    frontend = frontends()[spec.source.kind]
    src_sha = source_sha256(spec)
    steps: list[dict] = []

    start = time.perf_counter()
    # The lowering depends on the source, inputs and outputs, not on the data or the head, except
    # through a recipe (a two-stage model's detections per image are the head's max_detections).
    kept = ("data",) if spec.source.recipe else ("data", "head")
    lower_key = cache.key("lower", src_sha, {k: v for k, v in spec.to_dict().items() if k not in kept})
    def lower(folder: Path) -> dict:
        if warm_up:
            warm_up()
        return stages.run(frontend.lower, ("", "", "lower"), spec.source.kind, spec=spec.to_dict(),
                          out_path=str(folder / "model.onnx"), source_sha256=src_sha, toolchain=toolchain.versions()).value

    lowered, reused = cache.cached("lower", lower_key, lower)
    record_step(steps, opts.progress, "", "lower", start, reused)
    complete_head(spec, lowered.value, lowered.folder)

    start = time.perf_counter()
    eval_inputs, calib_inputs = work / "eval_inputs.npz", work / "calib_inputs.npz"
    evalset = prepare_inputs(eval_data, spec, spec.data.evaluation_images, eval_inputs, with_labels=True)
    prepare_inputs(calib_data, spec, spec.data.calibration_images, calib_inputs, with_labels=False)
    keys = {"onnx": lower_key, "eval": sha256_of(eval_inputs)[:16], "calib": sha256_of(calib_inputs)[:16]}
    record_step(steps, opts.progress, "", "inputs", start, False)

    def run_reference(folder: Path) -> dict:
        ran = stages.run(stage_names.RUN_INPUTS, ("", "", "reference"), runtime(frontend.reference_runtime).family,
                         runtime=frontend.reference_runtime, artifact=spec.source.path, spec=spec.to_dict(),
                         inputs=str(eval_inputs), outputs=str(folder / "outputs.npz"), settings={},
                         expected_outputs=None)
        # Decoded once here, for every run of every artifact (parity/compare.py).
        Reference.make(dict(np.load(folder / "outputs.npz")), spec, evalset.ground_truth).save(folder)
        return ran.value

    start = time.perf_counter()
    keys["reference"] = cache.key("reference", lower_key, keys["eval"], _truth_key(evalset), frontend.reference_runtime,
                                  spec.head.to_dict(), head_files_key(spec))
    ref, reused = cache.cached("reference", keys["reference"], run_reference)
    files = Reference.files_in(ref.folder)
    record_step(steps, opts.progress, "", "reference", start, reused)
    return Prepared(model_dir, work, lowered.folder / "model.onnx", lowered.value, eval_inputs, calib_inputs,
                    Reference.load(files), files, evalset, src_sha, stages, cache, keys, steps)
