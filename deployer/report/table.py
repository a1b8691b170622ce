"""The parity table printed at the end of a build or verify (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deployer.parity.tensor import SNR_EXACT_DB
from deployer.report.summary import number, runs_of

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "unverified": "magenta", "built": "green",
         "failed": "bold red"}


def parity_rows(entry: dict) -> list[dict]:
    """One row per runtime run of an artifact (web artifacts run in several)."""
    return runs_of(entry) or [{}]


def parity_table(manifest: dict, targets: list[str] | None = None) -> Table:
    table = Table(title=f"deployer parity: {manifest['model']}", show_lines=False)
    shown = [e for e in manifest["artifacts"]
             if not (targets and e["target"] not in targets) and not e.get("superseded_by_failed_build")]
    # Firmware artifacts (backends/tflm.py): size is the flash the models take (not their C
    # sources), and RAM the tensor arenas declared.
    ram = any(e.get("memory") for e in shown)
    for col in ("target", "backend", "precision", "runtime", "size", *(("RAM",) if ram else ()), "min cosine",
                "min SNR dB", "max abs", "agree mAP50", "agree mAP50-95", "mAP50 (ref)", "mAP50-95 (ref)", "verdict"):
        table.add_column(col, justify="right" if col not in ("target", "backend", "runtime", "verdict") else "left")
    for entry in shown:
        if entry["status"] != "built":
            table.add_row(entry["target"], entry["backend"], _label(entry), "-", "-", *(("-",) if ram else ()),
                          "-", "-", "-", "-", "-", "-", "-", f"[bold red]{entry['status']}[/]")
            continue
        memory = entry.get("memory") or {}
        size = f"{memory.get('flash_bytes', entry['size_bytes']) / 1e6:.2f} MB"
        extra = (f"{memory['arena_bytes'] / 1e3:.0f} kB" if memory else "-",) if ram else ()
        for run in parity_rows(entry):
            outs = run.get("outputs", {}).values()
            det = run.get("detection") or {}
            verdict = run.get("verdict", "unverified")
            table.add_row(
                entry["target"], entry["backend"], _label(entry), run.get("runtime", "-"), size, *extra,
                number(min((o["cosine"] for o in outs), default=None), ".6f"),
                number(min((o["snr_db"] for o in outs), default=None), ".1f"),
                number(max((o["max_abs"] for o in outs), default=None), ".2e"),
                number(det.get("agreement_map50"), ".3f"), number(det.get("agreement_map50_95"), ".3f"),
                f"{number(det.get('map50'), '.3f')} ({number(det.get('reference_map50'), '.3f')})",
                f"{number(det.get('map50_95'), '.3f')} ({number(det.get('reference_map50_95'), '.3f')})",
                f"[{STYLE.get(verdict, '')}]{verdict}[/]")
    return table


def failure_notes(manifest: dict, targets: list[str] | None = None) -> list[str]:
    notes = []
    for entry in manifest["artifacts"]:
        if targets and entry["target"] not in targets:
            continue
        label = f"{entry['target']}/{entry['backend']}_{_label(entry)}"
        if entry["status"] == "failed":
            notes.append(f"{label}: build failed: {entry.get('error', '')}")
        for run in parity_rows(entry):
            for reason in run.get("reasons", []):
                notes.append(f"{label} [{run.get('runtime', '?')}]: {reason}")
    for name, status in manifest.get("targets", {}).items():
        if not targets or name in targets:
            notes += (status.get("page") or {}).get("reasons", []) if (status.get("page") or {}).get("verdict") == "fail" else []
    return notes


def print_report(manifest: dict, targets: list[str] | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(parity_table(manifest, targets))
    for name, status in manifest.get("targets", {}).items():
        page = status.get("page")
        if page and (not targets or name in targets):
            rates = ", ".join(f"{m}: {v['matched']}/{v['reference']} boxes match, {v['ms_median']:.1f} ms"
                              for m, v in page.get("models", {}).items())
            console.print(f"{name} demo page in Chromium: {page['verdict']}" + (f" ({rates})" if rates else "")
                          + (f"; screenshot {page['screenshot']}" if page.get("screenshot") else ""))
    for note in failure_notes(manifest, targets):
        # escape: a note's "[runtime]" would otherwise be read as rich markup and vanish
        console.print(f"[red]x[/] {escape(note)}", highlight=False)


def _label(entry: dict) -> str:
    return entry["precision"] + (f" ({entry['variant']})" if entry.get("variant") else "")


def bench_table(manifest: dict) -> Table:
    """Latency and size per artifact, with ratios to the fp32 artifact of the same target and backend."""
    table = Table(title=f"deployer bench: {manifest['model']}")
    for col in ("target", "backend", "precision", "runtime", "size", "size vs fp32", "1 thread median ms",
                "p90 ms", "vs fp32", "default threads median ms", "vs fp32", "build s"):
        table.add_column(col, justify="left" if col in ("target", "backend", "precision", "runtime") else "right")
    fp32 = {(e["target"], e["backend"]): e for e in manifest["artifacts"]
            if e["precision"] == "fp32" and not e.get("variant") and "latency_ms_median" in e.get("bench", {})}
    for e in manifest["artifacts"]:
        b = e.get("bench")
        if not b:
            continue
        if "error" in b:
            table.add_row(e["target"], e["backend"], _label(e), "-", "-", "-", "-", "-", "-", "-", "-",
                          f"[red]{b['error'][:60]}[/]")
            continue
        base = fp32.get((e["target"], e["backend"]), {}).get("bench")
        ratio = (lambda a, k: f"{a / k:.2f}x" if k else "-")
        default = b["threads_default"]["latency_ms_median"]
        table.add_row(
            e["target"], e["backend"], _label(e), b["runtime"], f"{e['size_bytes'] / 1e6:.2f} MB",
            ratio(e["size_bytes"], base and base["size_bytes"]), f"{b['latency_ms_median']:.2f}",
            f"{b['latency_ms_p90']:.2f}", ratio(b["latency_ms_median"], base and base["latency_ms_median"]),
            f"{default:.2f}", ratio(default, base and base["threads_default"]["latency_ms_median"]),
            f"{b.get('build_seconds', 0.0):.1f}")
    return table


def print_layers(manifest: dict, console: Console) -> None:
    """Where each artifact starts to lose accuracy, tensor by tensor (verify --layers)."""
    for e in manifest["artifacts"]:
        layers = e.get("layers")
        if not layers:
            continue
        label = f"{e['target']}/{e['backend']}_{_label(e)}"
        if not layers["available"]:
            console.print(f"{label}: per-layer report not available ({layers['reason']})")
            continue
        first = layers["first_below"]
        where = (f"first tensor below {layers['threshold_db']:g} dB: '{first['tensor']}' ({first['op']} "
                 f"{first['node']}, {first['sqnr_db']:.1f} dB)") if first else \
            f"every tensor stays above {layers['threshold_db']:g} dB"
        console.print(f"[bold]{label}[/]: {where}")
        for r in layers["worst_drops"]:
            console.print(f"    {r['node']:28} {r['op']:10} drops {r['drop_db']:6.1f} dB -> "
                          f"{'exact' if r['sqnr_db'] >= SNR_EXACT_DB else format(r['sqnr_db'], '.1f') + ' dB'}")
