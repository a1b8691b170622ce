"""The worker stages the parent calls, by name, and how one build runs them.

Every stage that imports an ML framework runs in a child process (worker.py); the parent
names it by 'module:function'. Those names live here and in the registries' declarations
(backend builds, frontend lowering, runner classes), nowhere else (docs/ARCHITECTURE.md,
"Process model"). A stage also names its framework family: stages of one family share a
warm worker process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from deployer.errors import StageError, UserError
from deployer.progress import Progress
from deployer.worker import DEFAULT_TIMEOUT_S, StageResult, WorkerPool, run_stage

RUN_INPUTS = "deployer.runtimes.run:run_inputs"        # an artifact over the evaluation inputs, one runtime
BENCH = "deployer.runtimes.bench:bench"                 # latency of one artifact in one runtime
LAYER_ERRORS = "deployer.quantize.sensitivity:layer_errors"   # per-layer SQNR against the float graph
CHECK_PAGE = "deployer.runtimes.js:check_page"          # the web demo page in headless Chromium
INSPECT = "deployer.ir.inspect:inspect"                 # interface, ops and backend support of an ONNX file
INSPECT_TFLITE = "deployer.firmware.micro:inspect"      # ... of a .tflite, with TFLM's kernels
INT8_LINT = "deployer.quantize.lint:lint"               # graph patterns int8 handles badly, before calibration
COVERAGE = "deployer.quantize.lint:coverage"            # activation ranges: calibration vs evaluation images

T = TypeVar("T")


def default_jobs() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def thread_env(jobs: int) -> dict[str, str]:
    """Environment for workers when `jobs` stages share the cores: each framework gets its
    share, so two stages never run twice as many busy threads as there are cores (OpenMP
    runtimes spin while they wait, and an oversubscribed build crawls). Runners take
    DEPLOYER_THREADS as their default thread count; explicit `threads` settings win."""
    share = default_jobs() // max(1, jobs)
    if jobs <= 1 or share >= default_jobs():
        return {}
    share = str(max(1, share))
    return {"DEPLOYER_THREADS": share, "OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share,
            "OPENBLAS_NUM_THREADS": share, "TF_NUM_INTRAOP_THREADS": share, "TF_NUM_INTEROP_THREADS": "1"}


@dataclass
class BuildOptions:
    """How a build (or verify, or bench) runs: where to, how wide, how long a stage may take."""

    out: Path
    jobs: int = field(default_factory=default_jobs)
    timeout: float = 1800.0
    use_cache: bool = True
    worker_env: dict = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)

    def stages(self, work: Path, pool: WorkerPool | None = None) -> "Stages":
        return Stages(work / "logs", self.timeout, self.worker_env, pool, self.progress)


@dataclass(frozen=True)
class Stages:
    """Where and how one build's stages run: their logs folder, time limit, environment, the
    pool of warm workers (None: a fresh process per stage) and who hears of their progress."""

    logs: Path
    timeout: float = DEFAULT_TIMEOUT_S
    env: dict = field(default_factory=dict)
    pool: WorkerPool | None = None
    progress: Progress = field(default_factory=Progress)

    def run(self, func: str, where: tuple[str, str, str], family: str = "", priority: float = 0.0,
            **kwargs) -> StageResult:
        """Run a stage; `where` is (target, artifact, step), any of them '' when not one's own.
        Among stages waiting for a core, the lowest `priority` goes first: callers pass minus
        the stages still to come after this one, so the longest chains start first."""
        name = "-".join(p.replace(" ", "_") for p in where if p)
        self.progress.stage(*where, "running")
        start = time.perf_counter()
        try:
            if self.pool is not None and family:
                result = self.pool.run(family, func, kwargs, name, self.timeout, priority)
            else:
                result = run_stage(func, kwargs, workdir=self.logs, name=name, timeout=self.timeout, env=self.env)
        except BaseException as exc:
            # A stage cut short by Ctrl-C or SIGTERM did not fail: say it was stopped.
            stopped = isinstance(exc, KeyboardInterrupt) or (self.pool is not None and self.pool.closed)
            self.progress.stage(*where, "stopped" if stopped else "failed", time.perf_counter() - start)
            raise
        self.progress.stage(*where, "done", result.seconds)
        return result


def attempt(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a stage call; (value, None), or (None, the failure's message) when the stage failed
    or refused its input. Bugs in deployer's own code are not caught here."""
    try:
        return call(), None
    except (StageError, UserError) as exc:
        return None, str(exc)
