"""dist/<model>/manifest.json: the one machine-readable result of a build (docs/ARCHITECTURE.md,
"The manifest")."""

from __future__ import annotations

import json
import os
from pathlib import Path

from deployer.errors import UserError

MANIFEST = "manifest.json"


def load_manifest(model_dir: Path) -> dict | None:
    path = model_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}); delete it and rebuild") from None


def read_manifest(path: str | Path) -> tuple[Path, dict]:
    """A manifest from a model folder or the manifest file itself (for verify and bench)."""
    path = Path(path)
    model_dir = path.parent if path.is_file() else path
    manifest = load_manifest(model_dir)
    if manifest is None:
        raise UserError(f"{model_dir}: no {MANIFEST} here; build first with 'deployer build'")
    return model_dir, manifest


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


def build_record(spec, prep, tools: dict, version: str, seconds: float) -> dict:
    """The build-wide part of a manifest: model, source, toolchain, ONNX form, evaluation set, times."""
    return {
        "model": spec.name,
        "spec": spec.path,
        "source": {"path": spec.source.path or spec.source.factory, "kind": spec.source.kind,
                   "weights": spec.source.weights or None, "sha256": prep.source_sha256},
        "toolchain": tools,
        "deployer": version,
        "onnx": {**{k: prep.onnx_info.get(k) for k in ("opset", "exporter", "exporter_note", "source_form",
                                                       "simplify", "ops", "inputs", "outputs")},
                 "path": str(prep.onnx_path.relative_to(prep.model_dir))},   # the intermediate form
        "evaluation": {"images": prep.evalset.images, "skipped": prep.evalset.skipped,
                       "labelled": prep.evalset.ground_truth is not None},
        "stages": prep.steps,                       # the shared steps: lower, inputs, reference
        "stage_seconds": {s["step"]: s["seconds"] for s in prep.steps},
        "build_seconds": round(seconds, 2),
    }


def write_manifest(model_dir: Path, manifest: dict) -> Path:
    path = model_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
