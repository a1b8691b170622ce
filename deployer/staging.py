"""Atomic output folders: a target is built in a staging folder beside its final place and
swapped in with two renames only when it passed; otherwise it goes to `.rejected/<target>/`
and the previous good build stays."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

REJECTED = ".rejected"


def new_staging(model_dir: Path, target: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".staging-{target}-", dir=model_dir))


def replace_dir(staging: Path, final: Path) -> None:
    """Swap `staging` in for `final`: two renames on one filesystem, old copy removed last."""
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def land(staging: Path, model_dir: Path, target: str, ok: bool, entries: list[dict]) -> bool:
    """Move a finished staging folder to the target's folder (ok) or to `.rejected/`; a
    rejected target's entries get their paths rewritten to where the files now are.
    Returns whether a previous good build of the target is still in place."""
    final = model_dir / (target if ok else f"{REJECTED}/{target}")
    final.parent.mkdir(parents=True, exist_ok=True)
    if not ok:
        for e in entries:
            if "path" in e:
                e["path"] = f"{REJECTED}/{e['path']}"
                e["files"] = [f"{REJECTED}/{f}" for f in e["files"]]
                if e.get("decode"):
                    e["decode"] = f"{REJECTED}/{e['decode']}"
    replace_dir(staging, final)
    return (not ok) and (model_dir / target).is_dir()
