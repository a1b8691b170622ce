"""Worker stage: run an artifact over a set of inputs in one runtime; write the outputs."""

from __future__ import annotations

import time

import numpy as np

from deployer.parity.compare import Reference, measure
from deployer.runtimes import runner_class
from deployer.spec import ModelSpec


def make_runner(runtime: str, artifact: str, spec: ModelSpec, settings: dict | None = None,
                expected_outputs: dict | None = None, decode: str = ""):
    """A runner of the registry; reference runtimes get the source model's path as artifact.
    With `decode` (an artifact of pre-decode outputs), the runner runs that float decoding
    after the artifact (runtimes/decoded.py)."""
    if decode:
        from deployer.runtimes.decoded import Decoded

        return Decoded(runner_class(runtime), artifact, spec, settings, decode)
    return runner_class(runtime)(artifact or spec.source.path, spec, settings, expected_outputs)


def run_inputs(runtime: str, artifact: str, spec: dict, inputs: str, outputs: str, settings: dict,
               expected_outputs: dict | None = None, reference: dict | None = None, decode: str = "") -> dict:
    """Run every sample of the `inputs` .npz (arrays of shape (n, *input_shape)); write the
    outputs (n, *output_shape) to `outputs`. With `reference` (Reference.files_in), measure
    the outputs against it here, in this worker: the parent only judges. A runtime that
    cannot run the artifact here raises CannotVerify, which reaches the parent as such."""
    spec = ModelSpec.from_dict(spec)
    data = np.load(inputs)
    start = time.perf_counter()
    with make_runner(runtime, artifact, spec, settings, expected_outputs, decode) as runner:
        stacked = runner.infer_many({i.name: data[i.name] for i in spec.inputs})
        used = dict(runner.settings)
    np.savez(outputs, **stacked)
    value = {"runtime": runtime, "images": len(data[spec.inputs[0].name]), "settings": used,
             "seconds": round(time.perf_counter() - start, 3)}
    if reference is not None:
        value["metrics"] = measure(Reference.load(reference), stacked, spec)
    return value
