"""The worker stages the parent calls, by name, and how one build runs them.

Every stage that imports an ML framework runs in a child process (worker.py); the parent
names it by 'module:function'. Those names live here and in the registries' declarations
(backend builds, frontend lowering, runner classes), nowhere else (docs/ARCHITECTURE.md,
"Process model").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from deployer.errors import StageError, UserError
from deployer.worker import DEFAULT_TIMEOUT_S, StageResult, run_stage

RUN_INPUTS = "deployer.runtimes.run:run_inputs"        # an artifact over the evaluation inputs, one runtime
BENCH = "deployer.runtimes.bench:bench"                 # latency of one artifact in one runtime
LAYER_ERRORS = "deployer.quantize.sensitivity:layer_errors"   # per-layer SQNR against the float graph
CHECK_PAGE = "deployer.runtimes.js:check_page"          # the web demo page in headless Chromium
INSPECT = "deployer.ir.inspect:inspect"                 # interface, ops and backend support of an ONNX file

T = TypeVar("T")


@dataclass
class BuildOptions:
    """How a build (or verify, or bench) runs: where to, how wide, how long a stage may take."""

    out: Path
    jobs: int = 2
    timeout: float = 1800.0
    use_cache: bool = True
    worker_env: dict = field(default_factory=dict)

    def stages(self, work: Path) -> "Stages":
        return Stages(work / "logs", self.timeout, self.worker_env)


@dataclass(frozen=True)
class Stages:
    """Where and how one build's stages run: their logs folder, time limit and environment."""

    logs: Path
    timeout: float = DEFAULT_TIMEOUT_S
    env: dict = field(default_factory=dict)

    def run(self, func: str, name: str, **kwargs) -> StageResult:
        return run_stage(func, kwargs, workdir=self.logs, name=name, timeout=self.timeout, env=self.env)


def attempt(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a stage call; (value, None), or (None, the failure's message) when the stage failed
    or refused its input. Bugs in deployer's own code are not caught here."""
    try:
        return call(), None
    except (StageError, UserError) as exc:
        return None, str(exc)
