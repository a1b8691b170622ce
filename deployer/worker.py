"""Run stages in child processes and hand back JSON (docs/ARCHITECTURE.md, "Process model").

The parent (CLI, pipeline, parity, report) never imports an ML framework: torch,
TensorFlow, coremltools and OpenVINO do not coexist in one process, and a segfault in a
converter must fail one target, not the build. A stage is any importable function
`package.module:function` taking JSON-able keyword arguments and returning a JSON-able
value; files are exchanged through paths in those arguments. Each stage's output
(converter chatter, C-level logs included) goes to its own log file.

Two ways to run one:
- `run_stage`: a fresh process for one stage (`python -m deployer.worker REQUEST.json`);
- `WorkerPool`: long-lived workers, one per framework family at a time, each running the
  stages of its family one after the other (`python -m deployer.worker --serve`), so a
  framework is imported once per build, not once per stage. A worker that crashes or times
  out fails the stage it held, and only that one; the next stage of its family gets a new
  worker. Workers exit when the parent goes away.
"""

from __future__ import annotations

import heapq
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
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


def _child_env(env: dict | None) -> dict:
    child = {**os.environ, **(env or {})}
    # Keep the child's numerics deterministic and its logs quiet.
    child.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child.setdefault("PYTHONHASHSEED", "0")
    return child


def _files(workdir: Path, name: str) -> tuple[Path, Path, Path]:
    """A stage's request, result and log files (unique names under workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd, req_name = tempfile.mkstemp(prefix=f"{name}.", suffix=".request.json", dir=workdir)
    os.close(fd)
    request = Path(req_name)
    return request, request.with_suffix("").with_suffix(".result.json"), request.with_suffix("").with_suffix(".log")


def _outcome(name: str, result: Path, log: Path, seconds: float) -> StageResult:
    payload = json.loads(result.read_text())
    if payload["ok"]:
        return StageResult(payload["value"], seconds, str(log))
    # Errors raised on purpose keep their type across the boundary; anything else is a bug
    # in a stage (or a converter's exception) and fails that stage, naming its log.
    if payload["kind"] in ("user", "unverifiable"):
        raise KINDS[payload["kind"]](payload["error"])
    raise KINDS.get(payload["kind"], StageError)(f"{name}: {payload['error']} (log: {log})")


def run_stage(func: str, kwargs: dict, *, workdir: Path, name: str,
              timeout: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> StageResult:
    """Run `func(**kwargs)` in a fresh child process; raise StageError/UserError on failure."""
    request, result, log = _files(workdir, name)
    request.write_text(json.dumps({"func": func, "kwargs": kwargs, "result": str(result)}))
    start = time.perf_counter()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "deployer.worker", str(request)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=_child_env(env),
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise StageError(f"{name}: timed out after {timeout:.0f} s (log: {log})") from None
        except BaseException:   # Ctrl-C: the child is in its own session and would go on
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        try:   # what the stage forked and left running
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if not result.is_file():
        raise StageError(f"{name}: worker {_describe_exit(code)} (log: {log})\n{_tail(log)}")
    return _outcome(name, result, log, time.perf_counter() - start)


class _Worker:
    """One long-lived child serving stages of one family, one at a time."""

    def __init__(self, family: str, env: dict | None, log: Path):
        self.family = family
        read_fd, write_fd = os.pipe()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deployer.worker", "--serve", str(write_fd)], stdin=subprocess.PIPE,
                stdout=out, stderr=subprocess.STDOUT, env=_child_env(env), start_new_session=True,
                pass_fds=(write_fd,))
        os.close(write_fd)
        self.control = read_fd
        self.stages = 0
        self.busy = False

    def call(self, func: str, kwargs: dict, name: str, workdir: Path, timeout: float) -> StageResult:
        request, result, log = _files(workdir, name)
        start = time.perf_counter()
        line = json.dumps({"func": func, "kwargs": kwargs, "result": str(result), "log": str(log)}) + "\n"
        self.busy = True
        try:
            return self._call(line, name, result, log, start, timeout)
        finally:
            self.busy = False

    def _call(self, line: str, name: str, result: Path, log: Path, start: float, timeout: float) -> StageResult:
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: reported below from its exit status
        ready, _, _ = select.select([self.control], [], [], timeout)
        if not ready:
            self.kill()
            raise StageError(f"{name}: timed out after {timeout:.0f} s (log: {log})")
        done = os.read(self.control, 64)
        if not done:   # the worker died while holding this stage
            code = self.proc.wait()
            raise StageError(f"{name}: worker ({self.family}) {_describe_exit(code)} (log: {log})\n{_tail(log)}")
        self.stages += 1
        return _outcome(name, result, log, time.perf_counter() - start)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill its process group (converters' children included). The control pipe stays
        open: a thread waiting on it sees the end of file and reports the death."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self) -> None:
        if self.busy and self.alive:   # a preload nobody waits for any more
            self.kill()
            return
        if self.alive:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        try:   # anything its stages forked that is still there
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        os.close(self.control)   # nobody waits on it: the worker was idle


class _Slots:
    """A counting semaphore that wakes the most urgent waiter first (lowest priority number,
    then first come): stages on a build's longest remaining chain get the cores first."""

    def __init__(self, count: int):
        self.free, self.cond, self.waiting, self.ticket = count, threading.Condition(), [], 0

    def acquire(self, priority: float) -> None:
        with self.cond:
            self.ticket += 1
            me = (priority, self.ticket)
            heapq.heappush(self.waiting, me)
            while not (self.free and self.waiting[0] == me):
                self.cond.wait()
            heapq.heappop(self.waiting)
            self.free -= 1
            self.cond.notify_all()

    def release(self) -> None:
        with self.cond:
            self.free += 1
            self.cond.notify_all()


class WorkerPool:
    """Long-lived workers by framework family; at most `jobs` stages run at once.

    A family runs one stage at a time in one worker (a second worker would import the
    framework again, which costs more than waiting), except the families in `spread`,
    whose workers are cheap (they drive Node and Chromium processes): up to `jobs` of them.
    """

    def __init__(self, jobs: int, workdir: Path, env: dict | None = None, spread: frozenset = frozenset()):
        self.workdir, self.env, self.jobs, self.spread = workdir, env, max(1, jobs), spread
        self.slots = _Slots(self.jobs)
        self.families: dict[str, _Slots] = {}
        self.lock = threading.Lock()
        self.idle: dict[str, list[_Worker]] = {}
        self.all: list[_Worker] = []
        self.closed = False

    def _checkout(self, family: str) -> _Worker:
        with self.lock:
            if self.closed:
                raise StageError("the build is stopping: no new stages")
            idle = self.idle.setdefault(family, [])
            while idle:
                worker = idle.pop()
                if worker.alive:
                    return worker
            self.workdir.mkdir(parents=True, exist_ok=True)
            worker = _Worker(family, self.env, self.workdir / f"worker-{family}.log")
            self.all.append(worker)
            return worker

    def run(self, family: str, func: str, kwargs: dict, name: str, timeout: float,
            priority: float = 0.0) -> StageResult:
        with self.lock:
            turns = self.families.setdefault(family, _Slots(self.jobs if family in self.spread else 1))
        turns.acquire(priority)          # the family's turn first: no core is held while waiting for it
        try:
            self.slots.acquire(priority)
            try:
                worker = self._checkout(family)
                try:
                    return worker.call(func, kwargs, name, self.workdir, timeout)
                finally:
                    with self.lock:
                        if worker.alive and not self.closed:
                            self.idle[family].append(worker)
            finally:
                self.slots.release()
        finally:
            turns.release()

    def prewarm(self, families: list[tuple[str, tuple[str, ...]]], timeout: float) -> None:
        """In the background, one family at a time and only on a core no stage is waiting
        for: start each family's worker and import what it will need."""
        def warm():
            for family, modules in families:
                try:
                    self.run(family, "deployer.worker:preload", {"modules": list(modules)}, f"preload-{family}",
                             timeout, priority=1000)
                except (StageError, OSError):
                    pass   # the family's first real stage will say what is wrong
        threading.Thread(target=warm, daemon=True, name="prewarm").start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers = list(self.all)
        for worker in workers:
            worker.close()

    def abort(self) -> None:
        """Stop now (an interrupted build): no new stage starts, and every worker's process
        group is killed, so the threads waiting on running stages see them fail at once."""
        with self.lock:
            self.closed = True
            workers = list(self.all)
        for worker in workers:
            if worker.alive:
                worker.kill()


def preload(modules: list[str]) -> dict:
    """Worker stage: import modules (or call 'module:function' entries) ahead of real work."""
    import importlib

    for name in modules:
        if ":" in name:
            resolve(name)()
        else:
            importlib.import_module(name)
    return {"preloaded": modules}


def _execute(request: dict) -> dict:
    try:
        return {"ok": True, "value": resolve(request["func"])(**request["kwargs"])}
    except Exception as exc:  # noqa: BLE001 - any failure of a stage is reported, not raised
        kind = kind_of(exc)
        if kind is None:
            traceback.print_exc()
        return {"ok": False, "kind": kind or "internal",
                "error": str(exc) if kind else f"{type(exc).__name__}: {exc}"}


def _write_result(request: dict, payload: dict) -> None:
    result_path = Path(request["result"])
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, result_path)


def _child(request_path: str) -> int:
    _watch_parent()
    request = json.loads(Path(request_path).read_text())
    _write_result(request, _execute(request))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: TF and torch sometimes crash in atexit handlers after
    # the work is done and the result is safely on disk.
    os._exit(0)


def _watch_parent() -> None:
    """Die within half a second of the parent (its pid changes to the reaper's), with every
    process this worker started (its process group: converters' helpers, Node, Chromium), so
    nothing writes into a build folder after the build is gone (a SIGKILLed parent)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)   # a session leader: its group is its own
        finally:
            os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _serve(control_fd: int) -> int:
    """Run one stage per request line on stdin; write its result file, then say so."""
    _watch_parent()
    base_out, base_err = os.dup(1), os.dup(2)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(request["log"], "ab") as log:   # this stage's output, C-level writes included
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            payload = _execute(request)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(base_out, 1)
            os.dup2(base_err, 2)
        _write_result(request, payload)
        os.write(control_fd, b"done\n")
    # Processes a converter forked (OpenVINO's and NNCF's helpers) outlive an exiting worker
    # unless its group goes with it.
    os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(_serve(int(sys.argv[2])))
    sys.exit(_child(sys.argv[1]))
