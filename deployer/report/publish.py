"""What every command that changes a model folder's manifest writes with it: manifest.json,
SHA256SUMS (report/checksums.py), report.html and report.md (report/html.py)."""

from __future__ import annotations

from pathlib import Path

from deployer.report import checksums, html
from deployer.report.manifest import write_manifest


def publish(model_dir: Path, manifest: dict, earlier: list[Path] = ()) -> Path:
    """Write them all (each atomically); `earlier` reports may supply the overlays' images. The
    report's path."""
    write_manifest(model_dir, manifest)
    checksums.write(model_dir, manifest)
    return html.write(model_dir, manifest, list(earlier))
