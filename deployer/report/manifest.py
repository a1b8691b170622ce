"""dist/<model>/manifest.json: the one machine-readable result of a build (docs/ARCHITECTURE.md,
"The manifest")."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from deployer.errors import UserError
from deployer.parity.compare import REPORT_SAMPLES, sample_rows

MANIFEST = "manifest.json"
NUMBERS = re.compile(r"\[\s*((?:-?[0-9.eE+-]+,\s*)*-?[0-9.eE+-]+)\s*\]")


def load_manifest(model_dir: Path) -> dict | None:
    path = model_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}); delete it and rebuild") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); not a manifest deployer wrote: delete it and "
                        "rebuild") from None


def read_manifest(path: str | Path) -> tuple[Path, dict]:
    """A manifest from a model folder or the manifest file itself (for verify, bench, merge),
    checked to hold what they read."""
    path = Path(path)
    model_dir = path.parent if path.is_file() else path
    manifest = load_manifest(model_dir)
    if manifest is None:
        raise UserError(f"{model_dir}: no {MANIFEST} here; build first with 'deployer build'")
    check_manifest(model_dir / MANIFEST, manifest)
    return model_dir, manifest


# What verify, bench and merge read: field -> type, for the manifest and each artifact entry.
FIELDS = {"model": str, "spec": str, "targets": dict, "artifacts": list}
ENTRY_FIELDS = {"target": str, "backend": str, "precision": str, "status": str}
BUILT_FIELDS = {"path": str, "files": list, "sha256": str}


def check_manifest(path: Path, manifest) -> None:
    """A UserError naming the field when a manifest (edited, truncated, from another tool) lacks
    what the commands read."""
    def fail(field: str, expected: str):
        return UserError(f"{path}: field '{field}': expected {expected}; this is not a manifest deployer wrote "
                         "(rebuild with 'deployer build')")
    if not isinstance(manifest, dict):
        raise fail("(top level)", "an object")
    for key, kind in FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise fail(key, f"a {kind.__name__}")
    for i, entry in enumerate(manifest["artifacts"]):
        if not isinstance(entry, dict):
            raise fail(f"artifacts[{i}]", "an object")
        needed = {**ENTRY_FIELDS, **(BUILT_FIELDS if entry.get("status") == "built" else {})}
        for key, kind in needed.items():
            if not isinstance(entry.get(key), kind):
                raise fail(f"artifacts[{i}].{key}", f"a {kind.__name__}")
        if entry["target"] not in manifest["targets"]:
            raise fail(f"artifacts[{i}].target", f"one of the manifest's targets ({', '.join(manifest['targets'])})")


def merge_manifest(old: dict | None, new: dict, results: dict[str, tuple[list, dict]]) -> dict:
    """New entries for the targets just built; earlier targets' entries kept while their folder is."""
    manifest = dict(new)
    targets = dict((old or {}).get("targets", {}))
    artifacts = []
    for entry in (old or {}).get("artifacts", []):
        if entry["target"] in results:
            prev = results[entry["target"]][1]
            # A failed rebuild keeps the previous good artifacts on disk: keep saying so.
            if prev["status"] == "failed" and prev["kept_previous_build"] and entry["status"] == "built" \
                    and not entry.get("path", "").startswith(".rejected/"):
                artifacts.append({**entry, "superseded_by_failed_build": True})
            continue
        artifacts.append(entry)
    for name, (entries, status) in results.items():
        targets[name] = status
        artifacts.extend(entries)
    manifest["targets"] = targets
    manifest["artifacts"] = artifacts
    return manifest


def build_record(spec, prep, tools: dict, host: dict, version: str, seconds: float) -> dict:
    """The build-wide part of a manifest: model, source, toolchain, ONNX form, evaluation set, times."""
    return {
        "model": spec.name,
        "spec": spec.path,
        "labels": spec.labels,
        "source": {"path": spec.source.path or spec.source.factory, "kind": spec.source.kind,
                   "weights": spec.source.weights or None, "sha256": prep.source_sha256},
        "toolchain": tools,
        "deployer": version,
        "onnx": {**{k: prep.onnx_info.get(k) for k in ("opset", "exporter", "exporter_note", "source_form",
                                                       "simplify", "ops", "inputs", "outputs")},
                 "path": str(prep.onnx_path.relative_to(prep.model_dir))},   # the intermediate form
        "evaluation": {"images": prep.evalset.images, "skipped": prep.evalset.skipped,
                       "labelled": prep.evalset.ground_truth is not None, "samples": _samples(spec, prep),
                       "sample_input": {"width": spec.inputs[0].width, "height": spec.inputs[0].height,
                                        "resize": spec.preprocess.resize, "pad_value": spec.preprocess.pad_value}},
        "host": host,                               # where the parity was measured (toolchain.host)
        "stages": prep.steps,                       # the shared steps: lower, inputs, reference
        "stage_seconds": {s["step"]: s["seconds"] for s in prep.steps},
        "build_seconds": round(seconds, 2),
    }


def _samples(spec, prep) -> list[dict]:
    """The first evaluation images (relative to the spec's folder) and the reference's deployed
    detections on them: the report's overlays draw each artifact's beside these."""
    dets = prep.reference.detections
    rows = sample_rows(dets, spec.head.score_threshold) if dets is not None else []
    base = Path(spec.path).parent
    return [{"image": os.path.relpath(path, base), "reference": rows[i] if i < len(rows) else None}
            for i, path in enumerate(prep.evalset.paths[:REPORT_SAMPLES])]


def write_manifest(model_dir: Path, manifest: dict) -> Path:
    path = model_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(manifest, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    # Lists of numbers on one line each (boxes, histograms): a third of the size, still readable.
    text = NUMBERS.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
