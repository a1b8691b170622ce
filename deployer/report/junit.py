"""`deployer build --junit FILE`: the build's verdicts as JUnit XML, which CI systems show as
test results. One test suite per target, one test case per artifact and runtime: a failure
where the verdict failed, an error where the artifact could not be built, skipped where it
could not be verified; the figures in each case's output."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from deployer.report.summary import artifact_id, label, verdict_of


def _figures(entry: dict, run: dict) -> str:
    lines = [f"artifact: {entry.get('path', '-')} ({entry.get('size_bytes', 0)} bytes, sha256 {entry.get('sha256', '-')})",
             f"runtime: {run.get('runtime', '-')} on {run.get('images', 0)} images"]
    for name, o in (run.get("outputs") or {}).items():
        lines.append(f"output {name}: cosine {o['cosine']:.6f}, SNR {o['snr_db']:.1f} dB, max abs {o['max_abs']:.3g}, "
                     f"mean abs {o['mean_abs']:.3g}")
    det = run.get("detection") or {}
    for key in ("agreement_map50", "agreement_map50_95", "map50", "map50_95", "reference_map50", "reference_map50_95"):
        if det.get(key) is not None:
            lines.append(f"{key}: {det[key]:.4f}")
    if entry.get("memory"):
        lines.append(f"flash: {entry['memory']['flash_bytes']} bytes, arena: {entry['memory']['arena_bytes']} bytes")
    if (entry.get("bench") or {}).get("latency_ms_median") is not None:
        lines.append(f"latency: {entry['bench']['latency_ms_median']:.3f} ms median")
    lines += [f"threshold {k}: {v}" for k, v in (run.get("thresholds") or {}).items()]
    return "\n".join(lines) + "\n"


def _seconds(entry: dict, runtime: str | None) -> float:
    steps = entry.get("stages", [])
    return round(sum(s.get("seconds", 0.0) for s in steps
                     if s.get("step") == "build" or runtime is None or runtime in s.get("step", "")), 3)


def document(manifest: dict, targets: list[str]) -> ET.Element:
    root = ET.Element("testsuites", name=f"deployer {manifest['model']}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    stamp = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat()
    for target in targets:
        entries = [a for a in manifest["artifacts"] if a["target"] == target and not a.get("superseded_by_failed_build")]
        suite = ET.SubElement(root, "testsuite", name=f"{manifest['model']}.{target}", timestamp=stamp,
                              hostname=socket.gethostname() or "localhost")
        props = ET.SubElement(suite, "properties")
        for key, value in (("model", manifest["model"]), ("target", target),
                           ("deployer", str(manifest.get("deployer", ""))),
                           ("cpu", (manifest.get("host") or {}).get("cpu", ""))):
            ET.SubElement(props, "property", name=key, value=str(value))
        counts = dict.fromkeys(totals, 0)
        for entry in entries:
            runs = (entry.get("parity") or {}).get("runs") or ([entry["parity"]] if entry.get("parity") else [{}])
            for run in runs if entry["status"] == "built" else [{}]:
                runtime = run.get("runtime")
                name = label(entry) + (f" @ {runtime}" if runtime else "")
                case = ET.SubElement(suite, "testcase", name=name, classname=f"deployer.{artifact_id(entry)}",
                                     time=f"{_seconds(entry, runtime):.3f}")
                counts["tests"] += 1
                verdict = run.get("verdict") if entry["status"] == "built" else verdict_of(entry)
                reasons = "; ".join(run.get("reasons", []))
                if verdict == "fail":
                    counts["failures"] += 1
                    ET.SubElement(case, "failure", message=reasons[:500] or "parity below threshold",
                                  type="ParityFailure").text = reasons
                elif verdict in ("failed", "skipped") or entry["status"] != "built":
                    kind = "error" if verdict == "failed" else "skipped"
                    counts["errors" if kind == "error" else "skipped"] += 1
                    error = entry.get("error", "") or entry.get("reason", "") or verdict
                    node = ET.SubElement(case, kind, message=error.splitlines()[0][:500] if error else verdict)
                    if kind == "error":
                        node.set("type", "BuildError")
                        node.text = error
                elif verdict == "unverified":
                    counts["skipped"] += 1
                    ET.SubElement(case, "skipped", message=("unverified: " + reasons)[:500])
                elif verdict == "warn":
                    ET.SubElement(case, "system-err").text = f"warning (warn_only): {reasons}\n"
                if entry["status"] == "built":
                    out = ET.Element("system-out")
                    out.text = _figures(entry, run)
                    # system-out goes before system-err (the schema's order).
                    index = list(case).index(case.find("system-err")) if case.find("system-err") is not None else len(case)
                    case.insert(index, out)
        page = (manifest.get("targets", {}).get(target) or {}).get("page")
        if page:   # the demo page's own check, in Chromium: a case of its own
            case = ET.SubElement(suite, "testcase", name="demo page @ chromium", classname=f"deployer.{target}.page",
                                 time="0.000")
            counts["tests"] += 1
            reasons = "; ".join(page.get("reasons", []))
            if page.get("verdict") == "fail":
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=reasons[:500] or "demo page check failed",
                              type="PageFailure").text = reasons
            ET.SubElement(case, "system-out").text = "".join(
                f"{name}: {m.get('page_matched')}/{m.get('page')} boxes match, {m.get('ms_median', 0):.1f} ms\n"
                for name, m in (page.get("models") or {}).items())
        suite.set("tests", str(counts["tests"]))
        for key in ("failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
        suite.set("time", f"{sum(_seconds(a, None) for a in entries):.3f}")
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        root.set(key, str(value))
    return root


def write(path: str | Path, manifest: dict, targets: list[str]) -> Path:
    path = Path(path)
    tree = ET.ElementTree(document(manifest, targets))
    ET.indent(tree)
    tmp = path.with_name(f".{path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
    return path
