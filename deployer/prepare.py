"""What every target of a build shares, made once: the ONNX intermediate form, the
preprocessed calibration and evaluation inputs, and the reference outputs (the source
model run by its own framework on the evaluation inputs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deployer import stages as stage_names
from deployer import toolchain
from deployer.frontends import registry as frontends
from deployer.hashing import cache_key, sha256_of, source_sha256
from deployer.inputs import load_dataset, prepare_inputs
from deployer.parity.compare import EvalSet
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
    reference: dict[str, np.ndarray]
    evalset: EvalSet
    source_sha256: str
    stage_seconds: dict
    stages: Stages

    @property
    def expected_outputs(self) -> dict[str, list]:
        """The source model's output shapes: what every runtime's outputs must come back as."""
        return {o["name"]: o["shape"] for o in self.onnx_info["outputs"]}


def _cached(stages: Stages, product: Path, func: str, name: str, use_cache: bool, **kwargs):
    """Run a stage unless `product` and its JSON result from the same key are already there."""
    record = product.with_suffix(".json")
    if use_cache and product.is_file() and record.is_file():
        return json.loads(record.read_text()), 0.0
    result = stages.run(func, name, **kwargs)
    record.write_text(json.dumps(result.value))
    return result.value, result.seconds


def prepare(spec: ModelSpec, opts: BuildOptions, calibration: str = "", evaluation: str = "") -> Prepared:
    model_dir = opts.out / spec.name
    work = model_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    stages = opts.stages(work)
    use_cache = opts.use_cache
    tools = toolchain.versions()
    src_sha = source_sha256(spec)
    seconds = {}
    frontend = frontends()[spec.source.kind]

    lower_key = cache_key(src_sha, spec.to_dict(), tools)
    onnx_path = work / f"{spec.name}.{lower_key}.onnx"
    onnx_info, seconds["lower"] = _cached(
        stages, onnx_path, frontend.lower, "lower", use_cache,
        spec=spec.to_dict(), out_path=str(onnx_path), source_sha256=src_sha, toolchain=tools)

    eval_data = load_dataset(evaluation or spec.data.evaluation, spec, "evaluation")
    calib_data = load_dataset(calibration or spec.data.calibration, spec, "calibration")
    eval_inputs, calib_inputs = work / "eval_inputs.npz", work / "calib_inputs.npz"
    evalset = prepare_inputs(eval_data, spec, spec.data.evaluation_images, eval_inputs, with_labels=True)
    prepare_inputs(calib_data, spec, spec.data.calibration_images, calib_inputs, with_labels=False)

    ref_path = work / f"reference.{cache_key(lower_key, sha256_of(eval_inputs))}.npz"
    _, seconds["reference"] = _cached(
        stages, ref_path, stage_names.RUN_INPUTS, "reference", use_cache,
        runtime=frontend.reference_runtime, artifact=spec.source.path, spec=spec.to_dict(),
        inputs=str(eval_inputs), outputs=str(ref_path), settings={}, expected_outputs=None)
    return Prepared(model_dir, work, onnx_path, onnx_info, eval_inputs, calib_inputs, dict(np.load(ref_path)),
                    evalset, src_sha, seconds, stages)
