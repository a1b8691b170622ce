"""Progress of a build as it happens: one line per target and artifact with the running
stage, its elapsed time and the verdicts as they land (rich, live on a terminal), or plain
timestamped lines where output is not a terminal (CI logs).

The pipeline reports events; it never formats them.
"""

from __future__ import annotations

import threading
import time


class Progress:
    """Hears a build's events and shows nothing (library use, tests)."""

    def stage(self, target: str, artifact: str, step: str, state: str, seconds: float | None = None) -> None:
        pass

    def verdict(self, target: str, artifact: str, verdict: str, detail: str = "") -> None:
        pass

    def target_done(self, target: str, status: str) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class PlainProgress(Progress):
    """One line per finished stage and per verdict, with the time since the build started."""

    def __init__(self, console):
        self.console, self.start, self.lock = console, time.perf_counter(), threading.Lock()

    def _line(self, text: str) -> None:
        with self.lock:
            self.console.print(f"[{time.perf_counter() - self.start:6.1f}s] {text}", highlight=False, markup=False)

    def stage(self, target, artifact, step, state, seconds=None):
        if state == "running":
            return
        where = "/".join(p for p in (target, artifact) if p) or "build"
        took = f" ({seconds:.1f} s)" if seconds is not None and state != "reused" else ""
        self._line(f"{where}: {step} {state}{took}")

    def verdict(self, target, artifact, verdict, detail=""):
        self._line(f"{target}/{artifact}: {verdict}" + (f" ({detail})" if detail else ""))

    def target_done(self, target, status):
        self._line(f"{target}: {status}")


class LiveProgress(Progress):
    """A live table on a terminal: a row per target and artifact, refreshed as events land."""

    def __init__(self, console):
        from rich.live import Live

        self.console, self.start, self.lock = console, time.perf_counter(), threading.Lock()
        self.rows: dict[tuple[str, str], dict] = {}
        self.live = Live(console=console, refresh_per_second=4, transient=False, get_renderable=self._render)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def _row(self, target, artifact) -> dict:
        return self.rows.setdefault((target or "build", artifact), {"step": "", "state": "", "since": time.perf_counter(),
                                                                     "verdict": "", "done": 0.0})

    def stage(self, target, artifact, step, state, seconds=None):
        with self.lock:
            row = self._row(target, artifact)
            row.update(step=step, state=state, since=time.perf_counter())
            if seconds is not None and state != "reused":
                row["done"] += seconds

    def verdict(self, target, artifact, verdict, detail=""):
        with self.lock:
            self._row(target, artifact).update(verdict=verdict, state="finished", detail=detail)

    def target_done(self, target, status):
        with self.lock:
            self._row(target, "").update(verdict=status, state="finished", step="target")

    def _render(self):
        from rich.table import Table
        from rich.text import Text

        from deployer.report.table import STYLE

        table = Table(title=f"deployer: {time.perf_counter() - self.start:.0f} s", show_edge=False)
        for col in ("target", "artifact", "stage", "elapsed", "verdict"):
            table.add_column(col)
        now = time.perf_counter()
        with self.lock:
            for (target, artifact), row in self.rows.items():
                running = row["state"] == "running"
                elapsed = f"{now - row['since']:.0f} s" if running else f"{row['done']:.1f} s"
                stage = f"{row['step']} ..." if running else row["step"]
                verdict = row["verdict"]
                # Text, not markup: a name with brackets must show as it is.
                table.add_row(Text(target), Text(artifact), Text(stage), Text(elapsed),
                              Text(verdict, style=STYLE.get(verdict, "")))
        return table


def for_console(console) -> Progress:
    return LiveProgress(console) if console.is_terminal else PlainProgress(console)
