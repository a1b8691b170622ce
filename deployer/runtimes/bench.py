"""Worker stage: latency of one artifact in its runtime.

Warm-up runs first (allocation, JIT, caches), then N timed runs of `infer` on one real
preprocessed input; the median and p90 are reported, with 1 thread and with the runtime's
default thread count.
"""

from __future__ import annotations

import time

import numpy as np

from deployer.runtimes import get
from deployer.runtimes.run import make_runner
from deployer.spec import ModelSpec


def _time_runs(runner, feed: dict, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        runner.infer(feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.infer(feed)
        times.append((time.perf_counter() - start) * 1000)
    t = np.asarray(times)
    return {"latency_ms_median": round(float(np.median(t)), 4), "latency_ms_p90": round(float(np.percentile(t, 90)), 4),
            "latency_ms_min": round(float(t.min()), 4), "runs": runs, "warmup": warmup}


def bench(runtime: str, artifact: str, spec: dict, inputs: str, settings: dict, warmup: int = 10,
          runs: int = 50, decode: str = "") -> dict:
    spec = ModelSpec.from_dict(spec)
    data = np.load(inputs)
    feed = {i.name: data[i.name][0] for i in spec.inputs}
    takes_threads = any(o.name == "threads" for o in get(runtime).settings)
    result = {}
    for threads in (1, 0):
        # A runtime without a thread setting (the JavaScript ones run one thread) is timed as it is.
        run_settings = {**settings, "threads": threads} if takes_threads else dict(settings)
        with make_runner(runtime, artifact, spec, run_settings, decode=decode) as runner:
            figures = _time_runs(runner, feed, warmup, runs)
            figures["settings"] = dict(runner.settings)
        result["threads_1" if threads == 1 else "threads_default"] = figures
    return result
