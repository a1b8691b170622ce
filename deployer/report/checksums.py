"""dist/<model>/SHA256SUMS: every file of every target folder and every firmware bundle, in
`sha256sum -c` format, so a CI job (or a person) can check what it downloaded."""

from __future__ import annotations

import os
from pathlib import Path

from deployer.hashing import sha256_of

SUMS = "SHA256SUMS"


def listed(model_dir: Path, manifest: dict) -> list[str]:
    """The files SHA256SUMS covers, relative to the model folder, sorted."""
    names = []
    for target in manifest.get("targets", {}):
        folder = model_dir / target
        if folder.is_dir():
            names += [str(p.relative_to(model_dir)) for p in folder.rglob("*") if p.is_file()]
        names += [p.name for p in model_dir.glob(f"{manifest['model']}-{target}-*.tar.gz") if p.is_file()]
    return sorted(set(names))


def recorded(manifest: dict) -> dict[str, str]:
    """The sha256 each built artifact's files had when they were built and verified (by path
    relative to the model folder)."""
    out = {}
    for a in manifest.get("artifacts", []):
        if a.get("status") != "built" or str(a.get("path", "")).startswith(".rejected"):
            continue
        if a.get("file_sha256"):
            out.update(a["file_sha256"])
        elif len(a.get("files", [])) == 1 and a.get("sha256"):
            out[a["files"][0]] = a["sha256"]
    return out


def changed(model_dir: Path, manifest: dict) -> dict[str, str]:
    """Artifact files no longer as they were verified: {path: "missing" or "changed"}."""
    out = {}
    for name, sha in recorded(manifest).items():
        if not (model_dir / name).is_file():
            out[name] = "missing"
        elif sha256_of(model_dir / name) != sha:
            out[name] = "changed"
    return out


def write(model_dir: Path, manifest: dict) -> Path:
    """Artifact files are listed with the sha256 recorded when they were verified, not what is
    on disk now: a file changed or deleted since then fails `sha256sum -c` instead of being
    blessed by the next verify, bench or merge that rewrites this file."""
    known = recorded(manifest)
    names = sorted(set(listed(model_dir, manifest)) | set(known))
    lines = "".join(f"{known.get(name) or sha256_of(model_dir / name)}  {name}\n" for name in names)
    path = model_dir / SUMS
    tmp = model_dir / f".{SUMS}.tmp"
    tmp.write_text(lines)
    os.replace(tmp, path)
    return path
