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


def write(model_dir: Path, manifest: dict) -> Path:
    lines = "".join(f"{sha256_of(model_dir / name)}  {name}\n" for name in listed(model_dir, manifest))
    path = model_dir / SUMS
    tmp = model_dir / f".{SUMS}.tmp"
    tmp.write_text(lines)
    os.replace(tmp, path)
    return path
