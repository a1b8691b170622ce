"""Content hashes: artifacts' sha256 for the manifest, the source model's identity, and the
keys of cached stage results."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def artifact_sha256(root: Path, files: list[str]) -> str:
    """One file's own sha256; for a multi-file artifact (IR .xml + .bin, TF.js shards), the
    sha256 of the files' names and contents in order, so a change to any of them shows."""
    if len(files) == 1:
        return sha256_of(root / files[0])
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(Path(f).name.encode())
        h.update(sha256_of(root / f).encode())
    return h.hexdigest()


def source_sha256(spec) -> str:
    if spec.source.path:
        return sha256_of(spec.source.path)
    # A factory's identity is its weights plus the code that builds it: hash the factory
    # module's file when it can be found without importing it.
    h = hashlib.sha256(spec.source.factory.encode())
    if spec.source.weights:
        h.update(sha256_of(spec.source.weights).encode())
    module = spec.source.factory.split(":")[0].replace(".", "/") + ".py"
    for folder in [*spec.source.python_path, str(Path(spec.path).parent), os.getcwd()]:
        candidate = Path(folder) / module
        if candidate.is_file():
            h.update(candidate.read_bytes())
            break
    return h.hexdigest()


def cache_key(*parts) -> str:
    """A short key for JSON-able parts (the inputs of a cached stage)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
