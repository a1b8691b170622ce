"""Run one stage in a child process and hand back JSON.

The parent (CLI, pipeline, parity, report) never imports an ML framework: torch,
TensorFlow, coremltools and OpenVINO do not coexist in one process (docs/ARCHITECTURE.md,
"Process model"), and a segfault in a converter must fail one target, not the build. A stage is any importable
function `package.module:function` taking JSON-able keyword arguments and returning a
JSON-able value; files are exchanged through paths in those arguments.

Child protocol: `python -m deployer.worker REQUEST.json`; the request names the function,
its arguments and where to write the result. The child's stdout and stderr (converter
chatter) go to a log file next to the request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import KINDS, StageError, kind_of
from deployer.registry import resolve

DEFAULT_TIMEOUT_S = 1800


@dataclass
class StageResult:
    value: object
    seconds: float
    log: str


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_stage(func: str, kwargs: dict, *, workdir: Path, name: str,
              timeout: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> StageResult:
    """Run `func(**kwargs)` in a child process; raise StageError/UserError on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd, req_name = tempfile.mkstemp(prefix=f"{name}.", suffix=".request.json", dir=workdir)
    os.close(fd)
    request = Path(req_name)
    result = request.with_suffix("").with_suffix(".result.json")
    log = request.with_suffix("").with_suffix(".log")
    request.write_text(json.dumps({"func": func, "kwargs": kwargs, "result": str(result)}))
    child_env = {**os.environ, **(env or {})}
    # Keep the child's numerics deterministic and its logs quiet.
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env.setdefault("PYTHONHASHSEED", "0")
    start = time.perf_counter()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "deployer.worker", str(request)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise StageError(f"{name}: timed out after {timeout:.0f} s (log: {log})") from None
    seconds = time.perf_counter() - start
    if not result.is_file():
        raise StageError(f"{name}: worker {_describe_exit(code)} (log: {log})\n{_tail(log)}")
    payload = json.loads(result.read_text())
    if payload["ok"]:
        return StageResult(payload["value"], seconds, str(log))
    # Errors raised on purpose keep their type across the boundary; anything else is a bug
    # in a stage (or a converter's exception) and fails that stage, naming its log.
    if payload["kind"] in ("user", "unverifiable"):
        raise KINDS[payload["kind"]](payload["error"])
    raise KINDS.get(payload["kind"], StageError)(f"{name}: {payload['error']} (log: {log})")


def _child(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    result_path = Path(request["result"])
    try:
        value = resolve(request["func"])(**request["kwargs"])
        payload = {"ok": True, "value": value}
    except Exception as exc:  # noqa: BLE001 - any failure of a stage is reported, not raised
        kind = kind_of(exc)
        if kind is None:
            traceback.print_exc()
        payload = {"ok": False, "kind": kind or "internal",
                   "error": str(exc) if kind else f"{type(exc).__name__}: {exc}"}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: TF and torch sometimes crash in atexit handlers after
    # the work is done and the result is safely on disk.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
