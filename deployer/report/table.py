"""The parity table printed at the end of a build or verify (rich)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "unverified": "magenta"}


def _num(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def parity_rows(entry: dict) -> list[dict]:
    """One row per runtime run of an artifact (web artifacts run in several)."""
    parity = entry.get("parity") or {}
    return parity.get("runs") or ([parity] if parity else [{}])


def parity_table(manifest: dict, targets: list[str] | None = None) -> Table:
    table = Table(title=f"deployer parity: {manifest['model']}", show_lines=False)
    for col in ("target", "backend", "precision", "runtime", "size", "min cosine", "min SNR dB", "max abs",
                "agree mAP50", "agree mAP50-95", "mAP50 (ref)", "verdict"):
        table.add_column(col, justify="right" if col not in ("target", "backend", "runtime", "verdict") else "left")
    for entry in manifest["artifacts"]:
        if targets and entry["target"] not in targets:
            continue
        if entry["status"] != "built":
            table.add_row(entry["target"], entry["backend"], entry["precision"], "-", "-", "-", "-", "-", "-", "-", "-",
                          f"[bold red]{entry['status']}[/]")
            continue
        for run in parity_rows(entry):
            outs = run.get("outputs", {}).values()
            det = run.get("detection") or {}
            verdict = run.get("verdict", "unverified")
            table.add_row(
                entry["target"], entry["backend"], entry["precision"], run.get("runtime", "-"),
                f"{entry['size_bytes'] / 1e6:.2f} MB",
                _num(min((o["cosine"] for o in outs), default=None), ".6f"),
                _num(min((o["snr_db"] for o in outs), default=None), ".1f"),
                _num(max((o["max_abs"] for o in outs), default=None), ".2e"),
                _num(det.get("agreement_map50"), ".3f"), _num(det.get("agreement_map50_95"), ".3f"),
                f"{_num(det.get('map50'), '.3f')} ({_num(det.get('reference_map50'), '.3f')})",
                f"[{STYLE.get(verdict, '')}]{verdict}[/]")
    return table


def failure_notes(manifest: dict, targets: list[str] | None = None) -> list[str]:
    notes = []
    for entry in manifest["artifacts"]:
        if targets and entry["target"] not in targets:
            continue
        label = f"{entry['target']}/{entry['backend']}_{entry['precision']}"
        if entry["status"] == "failed":
            notes.append(f"{label}: build failed: {entry.get('error', '')}")
        for run in parity_rows(entry):
            for reason in run.get("reasons", []):
                notes.append(f"{label} [{run.get('runtime', '?')}]: {reason}")
    return notes


def print_report(manifest: dict, targets: list[str] | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(parity_table(manifest, targets))
    for note in failure_notes(manifest, targets):
        console.print(f"[red]x[/] {note}", highlight=False)
