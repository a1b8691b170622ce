"""dist/<model>/report.html (one self-contained file: styles, charts and images inline, no
script, nothing fetched) and report.md (for a pull-request comment), written from the
manifest by every build, `verify`, `bench` and `merge`.

What a person deciding whether to ship needs: per artifact its size, latency when benched,
tensor and detection parity with verdicts and reasons; size and latency against agreement;
where the errors lie (per-output histograms), which classes lose AP, and the detections that
differ from the reference's on a few evaluation images; each failure with its error and log.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from deployer.report import overlays, svg
from deployer.report.summary import (
    artifact_id,
    label,
    line,
    log_file,
    number,
    runs_of,
    target_summaries,
    verdict_of,
)

HTML, MARKDOWN = "report.html", "report.md"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:24px 0 6px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
td:first-child,th:first-child,td.l{text-align:left}th{background:#f5f5f5}
.v{font-weight:600;padding:1px 6px;border-radius:3px;color:#fff}.pass{background:#2e7d32}.warn{background:#f9a825}
.fail,.failed{background:#c62828}.unverified,.skipped{background:#8e24aa}.muted{color:#777}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:300px;white-space:pre-wrap}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart text{font-size:11px}.chart .ct{font-size:12px;font-weight:600}
.chart .tick{fill:#555}.chart .pl{font-size:10px;fill:#333}.frame{fill:none;stroke:#bbb}.grid{stroke:#eee}
.pair{display:inline-flex;gap:6px;margin:0 14px 10px 0;vertical-align:top}.ov{margin:0}.ov figcaption{font-size:12px}
.ov rect{fill:none;stroke-width:1.2}.ov text{font-size:7px;paint-order:stroke;stroke:#fff;stroke-width:2px}
rect.ref{stroke:#1565c0}text.ref{fill:#1565c0}rect.same{stroke:#2e7d32}text.same{fill:#2e7d32}
rect.extra{stroke:#ef6c00;stroke-dasharray:3 2}text.extra{fill:#ef6c00}
rect.missed{stroke:#c62828;stroke-dasharray:2 2}text.missed{fill:#c62828}
"""


def _first(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _latency(entry: dict, run: dict | None = None) -> float | None:
    """The benched latency; in a runtime's row only when that runtime was benched (a web
    artifact is benched in Python's ONNX Runtime, not in the browser rows beside it)."""
    bench = entry.get("bench") or {}
    if run is not None and run.get("runtime") not in (None, bench.get("runtime")):
        return None
    return bench.get("latency_ms_median")


def _badge(verdict: str) -> str:
    return f'<span class="v {escape(verdict)}">{escape(verdict)}</span>'


def _shown(manifest: dict) -> list[dict]:
    return [a for a in manifest["artifacts"] if not a.get("superseded_by_failed_build")]


def _row(entry: dict, run: dict) -> list[str]:
    outs = (run.get("outputs") or {}).values()
    det = run.get("detection") or {}
    memory = entry.get("memory") or {}
    return [escape(entry["target"]), escape(label(entry)), escape(run.get("runtime", "-")),
            number(memory.get("flash_bytes", entry.get("size_bytes", 0)) / 1e6, ".2f"),
            number(memory["arena_bytes"] / 1e3, ".0f") if memory else "-", number(_latency(entry, run), ".2f"),
            number(min((o["cosine"] for o in outs), default=None), ".6f"),
            number(min((o["snr_db"] for o in outs), default=None), ".1f"),
            number(det.get("agreement_map50"), ".3f"), number(det.get("agreement_map50_95"), ".3f"),
            f"{number(det.get('map50_95'), '.3f')} ({number(det.get('reference_map50_95'), '.3f')})",
            _badge(run.get("verdict", "unverified")), escape("; ".join(run.get("reasons", [])))]


HEAD = ("target", "artifact", "runtime", "size MB", "RAM kB", "latency ms", "min cosine", "min SNR dB",
        "agree mAP50", "agree mAP50-95", "mAP50-95 (ref)", "verdict", "reasons")


def _overview(manifest: dict) -> str:
    rows = []
    for e in _shown(manifest):
        if e["status"] != "built":
            rows.append(f'<tr><td><a href="#{artifact_id(e)}">{escape(e["target"])}</a></td><td class="l">'
                        f'{escape(label(e))}</td><td colspan="9"></td><td>{_badge(verdict_of(e))}</td>'
                        f'<td class="l">{escape(_first(e.get("error")))}</td></tr>')
            continue
        for run in runs_of(e) or [{}]:
            cells = _row(e, run)
            cells[0] = f'<a href="#{artifact_id(e)}">{cells[0]}</a>'
            rows.append("<tr>" + "".join(f'<td{" class=l" if i in (1, 2, 12) else ""}>{c}</td>'
                                         for i, c in enumerate(cells)) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in HEAD) + "</tr>" + "".join(rows) + "</table>")


def _trade_offs(manifest: dict) -> str:
    """Size (and latency, when benched) against agreement mAP@0.5:0.95 (or min cosine without detections)."""
    built = [e for e in _shown(manifest) if e["status"] == "built" and e.get("parity")]
    det = any((e["parity"].get("detection") or {}).get("agreement_map50_95") is not None for e in built)

    def quality(e):
        if det:
            return (e["parity"].get("detection") or {}).get("agreement_map50_95")
        return min((o["cosine"] for o in (e["parity"].get("outputs") or {}).values()), default=None)
    y_label = "agreement mAP@0.5:0.95" if det else "min cosine"
    points = [{"x": (e.get("memory") or {}).get("flash_bytes", e.get("size_bytes", 0)) / 1e6, "y": quality(e),
               "label": f"{e['target']}/{label(e)}", "colour": svg.VERDICT_COLOUR.get(e["parity"].get("verdict"), "#777")}
              for e in built]
    charts = [svg.scatter(points, "size (MB, log)", y_label, log_x=True, title=f"size vs {y_label}")]
    timed = [{**p, "x": _latency(e)} for p, e in zip(points, built) if _latency(e)]
    if timed:
        charts.append(svg.scatter(timed, "latency (ms, median, log)", y_label, log_x=True,
                                  title=f"latency vs {y_label}"))
    else:
        charts.append('<p class="muted">No latency yet: <code>deployer bench</code> measures it and rewrites this '
                      "report.</p>")
    return '<div class="charts">' + "".join(charts) + "</div>"


def _histograms(run: dict) -> str:
    outs = run.get("outputs") or {}
    hist = {name: o["abs_error_hist"] for name, o in outs.items() if o.get("abs_error_hist")}
    if not hist:
        return ""
    decades = next(iter(hist.values()))["decades"]
    groups = [f"<1e{decades[0]}"] + [f"1e{d}" for d in decades[:-1]] + [f">=1e{decades[-1]}"]
    series = []
    for name, h in hist.items():
        total = max(1, sum(h["counts"]))
        series.append((name, [100.0 * c / total for c in h["counts"]]))
    return svg.bars(groups, series, "% of values", width=520, title="|artifact - reference| per output, by decade",
                    y_max=100.0)


def _per_class(run: dict) -> str:
    per = (run.get("detection") or {}).get("per_class") or {}
    if not per:
        return ""
    names = list(per)
    return svg.bars(names, [("reference", [per[n].get("reference_ap50_95") for n in names]),
                            ("artifact", [per[n].get("ap50_95") for n in names])],
                    "AP@0.5:0.95", width=max(360, min(1300, 60 + 34 * len(names))), y_max=1.0,
                    title="AP@0.5:0.95 per class against the labels")


def _failure(entry: dict) -> str:
    texts = [entry.get("error", "")] if entry["status"] != "built" else []
    texts += [r.get("error", "") for r in runs_of(entry) if r.get("error")]
    out = []
    for text in filter(None, texts):
        log = log_file(text)
        out.append(f"<pre>{escape(text)}</pre>" + (f'<p>log: <code>{escape(log)}</code></p>' if log else ""))
    return "".join(out)


def _artifact(entry: dict, manifest: dict, images: dict) -> str:
    verdict = verdict_of(entry)
    parts = [f'<section class="artifact" id="{artifact_id(entry)}"><h3>{escape(entry["target"])} / '
             f'{escape(label(entry))} {_badge(verdict)}</h3>']
    if entry["status"] == "built":
        parts.append(f'<p class="muted">{escape(entry["path"])} · {entry.get("size_bytes", 0) / 1e6:.2f} MB · sha256 '
                     f'<code>{escape(entry.get("sha256", "")[:16])}…</code>'
                     + (f' · notes: {escape("; ".join(entry["notes"]))}' if entry.get("notes") else "") + "</p>")
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in HEAD[2:]) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in _row(entry, run)[2:]) + "</tr>"
                               for run in runs_of(entry)) + "</table>")
    parts.append(_failure(entry))
    run = entry.get("parity") or {}
    charts = [c for c in (_histograms(run), _per_class(run)) if c]
    if charts:
        parts.append('<div class="charts">' + "".join(charts) + "</div>")
    samples = (manifest.get("evaluation") or {}).get("samples") or []
    ours = (run.get("detection") or {}).get("samples")
    if ours is not None and samples:
        parts.append("<div>" + "".join(
            overlays.overlay(i, images[i], s.get("reference"), ours[i] if i < len(ours) else [], manifest.get("labels", []),
                             f"{entry['backend']} {entry['precision']}")
            for i, s in enumerate(samples) if i in images) + "</div>")
        if len(images) < len(samples):
            parts.append('<p class="muted">some evaluation images are not on this machine: their overlays are left out</p>')
    return "".join(parts) + "</section>"


def render(manifest: dict, images: dict) -> str:
    model = escape(manifest["model"])
    host = manifest.get("host") or {}
    toolchain = ", ".join(f"{k} {v}" for k, v in (manifest.get("toolchain") or {}).items())
    evaluation = manifest.get("evaluation") or {}
    summaries = target_summaries(manifest)
    failures = [e for e in _shown(manifest) if verdict_of(e) in ("fail", "failed")]
    body = [f"<h1>deployer report: {model}</h1>",
            f'<p class="muted">source {escape(str((manifest.get("source") or {}).get("path", "")))} · '
            f'{evaluation.get("images", 0)} evaluation images{" (labelled)" if evaluation.get("labelled") else ""} · '
            f'measured on {escape(host.get("cpu", "?"))} ({escape(host.get("machine", "?"))}, '
            f'{escape(" ".join(f for f in host.get("cpu_flags", []) if f.startswith("avx")))}) · deployer '
            f'{escape(str(manifest.get("deployer", "")))}</p>',
            "<h2>Targets</h2><ul>" + "".join(f"<li>{_badge('pass' if s['status'] == 'built' else 'fail')} "
                                             f"{escape(line(s))}</li>" for s in summaries) + "</ul>"]
    if failures:
        body.append("<h2>Failures</h2><ul>" + "".join(
            f'<li><a href="#{artifact_id(e)}">{escape(e["target"])} / {escape(label(e))}</a>: '
            f'{escape("; ".join((e.get("parity") or {}).get("reasons", [])) or _first(e.get("error")))}</li>'
            for e in failures) + "</ul>")
    body += ["<h2>Artifacts</h2>", _overview(manifest), "<h2>Trade-offs</h2>", _trade_offs(manifest),
             "<h2>Per artifact</h2>",
             '<p class="muted">Overlays: the reference\'s deployed detections (blue) and the artifact\'s on the same '
             "image as the network sees it; green boxes match the reference (same class, IoU >= 0.5), orange dashed "
             "ones are added by the artifact, red dashed reference boxes are missed by it.</p>",
             overlays.defs(images), *(_artifact(e, manifest, images) for e in _shown(manifest)),
             f'<h2>Toolchain</h2><p class="muted">{escape(toolchain)}</p>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>deployer report: {model}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def markdown(manifest: dict) -> str:
    """The same verdicts for a pull-request comment: one line per target, a table, the failures."""
    lines = [f"### deployer: {manifest['model']}", ""]
    lines += [f"- {'✅' if s['status'] == 'built' else '❌'} {line(s)}" for s in target_summaries(manifest)]
    lines += ["", "| target | artifact | runtime | size MB | latency ms | agree mAP50 | agree mAP50-95 | "
              "mAP50-95 (ref) | verdict |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for e in _shown(manifest):
        for run in runs_of(e) or [{}]:
            det = run.get("detection") or {}
            lines.append(f"| {e['target']} | {label(e)} | {run.get('runtime', '-')} | "
                         f"{number(e.get('size_bytes', 0) / 1e6, '.2f')} | {number(_latency(e, run), '.2f')} | "
                         f"{number(det.get('agreement_map50'), '.3f')} | {number(det.get('agreement_map50_95'), '.3f')} | "
                         f"{number(det.get('map50_95'), '.3f')} ({number(det.get('reference_map50_95'), '.3f')}) | "
                         f"{run.get('verdict', verdict_of(e))} |")
    bad = [e for e in _shown(manifest) if verdict_of(e) in ("fail", "failed", "unverified")]
    if bad:
        lines += ["", "**Needs attention**", ""]
        for e in bad:
            why = "; ".join((e.get("parity") or {}).get("reasons", [])) or _first(e.get("error"))
            lines.append(f"- {e['target']} / {label(e)}: {verdict_of(e)}: {why}")
    return "\n".join(lines) + "\n"


def write(model_dir: Path, manifest: dict, earlier: list[Path] = ()) -> Path:
    """report.html and report.md in `model_dir`, each written whole or not at all; the HTML's path."""
    images = overlays.sample_images(manifest, [model_dir / HTML, *earlier])
    for name, text in ((HTML, render(manifest, images)), (MARKDOWN, markdown(manifest))):
        tmp = model_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, model_dir / name)
    return model_dir / HTML
