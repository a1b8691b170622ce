"""One summary per target, for the end of a build (a line each), `--json` on stdout, report.md
and the JUnit file: what a CI log shows and a script reads."""

from __future__ import annotations

import math
import re

VERDICTS = ("pass", "warn", "fail", "unverified")
LOG_RE = re.compile(r"\(log: ([^)]+)\)")


def number(value, fmt: str) -> str:
    """A figure for a table: '-' where it is missing or undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def runs_of(entry: dict) -> list[dict]:
    """Every runtime run of an artifact (web artifacts run in several; older entries hold one)."""
    parity = entry.get("parity") or {}
    return parity.get("runs") or ([parity] if parity else [])


def label(entry: dict) -> str:
    """backend precision[+variant], as the tables name an artifact."""
    return f"{entry['backend']} {entry['precision']}" + (f" {entry['variant']}" if entry.get("variant") else "")


def artifact_id(entry: dict) -> str:
    """A stable identifier of an artifact in a target (HTML anchors, JUnit case names)."""
    parts = [entry["target"], entry["backend"], entry["precision"], entry.get("variant") or ""]
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p) for p in parts if p)


def verdict_of(entry: dict) -> str:
    """pass, warn, fail, unverified, or failed (the build itself failed)."""
    if entry["status"] != "built":
        return "failed" if entry["status"] == "failed" else entry["status"]
    return (entry.get("parity") or {}).get("verdict", "unverified")


def log_file(text: str) -> str | None:
    """The log file a stage's error names, if any."""
    found = LOG_RE.search(text or "")
    return found.group(1) if found else None


def target_summaries(manifest: dict, targets: list[str] | None = None) -> list[dict]:
    """Per target: its status, artifact count, counts per verdict, failed builds, size, time."""
    out = []
    for name, status in manifest.get("targets", {}).items():
        if targets and name not in targets:
            continue
        entries = [a for a in manifest["artifacts"] if a["target"] == name and not a.get("superseded_by_failed_build")]
        counts = {v: sum(verdict_of(a) == v for a in entries) for v in (*VERDICTS, "failed")}
        built = [a for a in entries if a["status"] == "built"]
        kept = [a for a in manifest["artifacts"] if a["target"] == name and a.get("superseded_by_failed_build")]
        out.append({"target": name, "status": status.get("status", "?"), "artifacts": len(entries), **counts,
                    "kept_previous": len(kept),
                    "size_bytes": sum(a.get("size_bytes", 0) for a in built),
                    "stage_seconds": round(sum(s.get("seconds", 0.0) for a in entries for s in a.get("stages", [])), 2),
                    "problems": [f"{label(a)}: " + ("; ".join((a.get("parity") or {}).get("reasons", []))
                                                   if a["status"] == "built" else (a.get("error") or a["status"]).strip().splitlines()[0])
                                 for a in entries if verdict_of(a) in ("fail", "failed", "unverified")]})
    return out


def line(s: dict) -> str:
    """`android: built, 3 artifacts: 3 pass (5.3 MB)` and what failed."""
    counts = ", ".join(f"{s[v]} {v}" for v in (*VERDICTS, "failed") if s[v])
    text = f"{s['target']}: {s['status']}, {s['artifacts']} artifact{'s' if s['artifacts'] != 1 else ''}"
    text += f": {counts}" if counts else ""
    text += f" ({s['size_bytes'] / 1e6:.2f} MB)"
    if s["problems"]:
        text += "; " + "; ".join(p[:160] for p in s["problems"][:3])
    if s.get("kept_previous"):   # what an app fetching <target>/ gets today: the last good build
        text += (f"; the previous good build ({s['kept_previous']} artifact{'s' if s['kept_previous'] != 1 else ''}) "
                 f"stays in {s['target']}/, this one is in .rejected/{s['target']}/")
    return text
