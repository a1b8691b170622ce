"""`make bench-build`: the build's own speed, measured the same way on any machine.

Builds a model spec for the demo targets twice in one fresh output folder: cold (nothing
cached) and warm (unchanged inputs, everything reusable), and prints the wall time of each
stage in both and the warm/cold ratio. Figures are ratios within one run, so a shared or
noisy machine still gives comparable numbers.

    python -m deployer.benchbuild [SPEC] [--target T ...] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from deployer.cli import DEFAULT_TARGETS


def _build(spec: str, targets: list[str], out: Path, no_cache: bool) -> tuple[dict, float]:
    from deployer import cli

    args = ["build", spec, *(a for t in targets for a in ("--target", t)), "--out", str(out)]
    start = time.perf_counter()
    status = cli.main(args + (["--no-cache"] if no_cache else []))
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"bench-build: the build failed (exit {status}); see above")
    manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
    return manifest, seconds


def _stage_times(manifest: dict) -> dict[str, dict]:
    rows = {f"(shared) {s['step']}": s for s in manifest.get("stages", [])}
    for a in manifest["artifacts"]:
        for s in a.get("stages", []):
            rows[f"{a['target']}/{a['backend']}_{a['precision']}: {s['step']}"] = s
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deployer.benchbuild", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default="examples/shapes/shapes.toml")
    ap.add_argument("--target", action="append", help=f"default: {', '.join(DEFAULT_TARGETS)}")
    ap.add_argument("--out", default="dist/bench-build", help="a folder emptied first (default: dist/bench-build)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    targets = args.target or list(DEFAULT_TARGETS)
    cold, cold_s = _build(args.spec, targets, out, no_cache=True)
    warm, warm_s = _build(args.spec, targets, out, no_cache=False)

    from rich.console import Console
    from rich.table import Table

    cold_rows, warm_rows = _stage_times(cold), _stage_times(warm)
    table = Table(title="deployer bench-build: wall time per stage (s)")
    for col in ("stage", "cold", "warm"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, row in sorted(cold_rows.items(), key=lambda kv: -kv[1]["seconds"]):
        w = warm_rows.get(name)
        table.add_row(name, f"{row['seconds']:.1f}",
                      "-" if w is None else ("reused" if w["reused"] else f"{w['seconds']:.1f}"))
    console = Console(width=160) if not sys.stdout.isatty() else Console()
    console.print(table)
    reused = sum(r["reused"] for r in warm_rows.values())
    summary = {"cold_build_seconds": cold["build_seconds"], "warm_build_seconds": warm["build_seconds"],
               "cold_wall_seconds": round(cold_s, 2), "warm_wall_seconds": round(warm_s, 2),
               "warm_over_cold": round(warm["build_seconds"] / cold["build_seconds"], 4),
               "warm_stages_reused": reused, "warm_stages": len(warm_rows),
               "stage_seconds_cold": round(sum(r["seconds"] for r in cold_rows.values()), 1),
               "targets": targets, "spec": args.spec}
    console.print(f"cold build {summary['cold_build_seconds']:.1f} s, warm rebuild {summary['warm_build_seconds']:.2f} s "
                  f"({100 * summary['warm_over_cold']:.1f}% of cold; {reused} of {len(warm_rows)} stages reused); "
                  f"{summary['stage_seconds_cold']:.0f} stage-seconds of work in the cold build")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
