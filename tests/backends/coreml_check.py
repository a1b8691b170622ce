"""Converts models with deployer's CoreML backend and runs each ML program in the MIL
interpreter beside its source framework, in one process per framework (torch or TensorFlow,
never both: docs/ARCHITECTURE.md, "Toolchain facts").

    python -m tests.backends.coreml_check RESULTS.json SPEC.toml [SPEC.toml ...]

writes, per spec: the program's op types, those the interpreter lacks, the conversion's
repairs, and per output the cosine, the max abs error, the reference's max magnitude and
whether every value is a float16 (the interpreter's rounding rule).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _compare(got: np.ndarray, want: np.ndarray) -> dict:
    g, w = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
    return {"shape": list(got.shape), "want_shape": list(want.shape),
            "cosine": float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w) + 1e-30)),
            "max_abs": float(np.abs(g - w).max()), "magnitude": float(np.abs(w).max()),
            "float16_values": bool(np.array_equal(got, got.astype(np.float16).astype(np.float32)))}


def check(spec_path: str) -> dict:
    from deployer.backends.coreml import convert
    from deployer.frontends import registry as frontends
    from deployer.runtimes.coreml import MILProgram
    from deployer.runtimes.run import make_runner
    from deployer.spec import load_model_spec

    start = time.perf_counter()
    spec = load_model_spec(Path(spec_path))
    out = Path(spec_path).with_suffix("")
    out.mkdir(exist_ok=True)
    info = convert(onnx_path="", spec=spec.to_dict(), options={}, calibration="", out_dir=str(out))
    package = str(out / "base.mlpackage")
    program = MILProgram(package)
    inp = spec.inputs[0]
    x = np.random.default_rng(1).random(inp.shape, dtype=np.float32)
    with make_runner(frontends()[spec.source.kind].reference_runtime, "", spec, {}) as runner:
        want = runner.infer({inp.name: x})
    with make_runner("coreml", package, spec, {}) as runner:
        got = runner.infer({inp.name: x})
    return {"ops": sorted(set(program.ops) - {"const"}), "missing": sorted(program.unsupported()),
            "repairs": info["repairs"], "outputs": {k: _compare(got[k], want[k]) for k in spec.outputs},
            "seconds": round(time.perf_counter() - start, 1)}


def main(results: str, *specs: str) -> None:
    if not any("tensorflow" in Path(s).read_text() for s in specs):
        sys.modules["tensorflow"] = None   # torch sources: coremltools must not import TF
    Path(results).write_text(json.dumps({Path(s).stem: check(s) for s in specs}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
