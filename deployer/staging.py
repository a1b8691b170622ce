"""Atomic output folders: a target is built in a staging folder beside its final place and
swapped in with two renames only when it passed; otherwise it goes to `.rejected/<target>/`
and the previous good build stays."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

REJECTED = ".rejected"


STAGING = re.compile(r"^\.staging-.+-(\d+)-[A-Za-z0-9_]+$")


def new_staging(model_dir: Path, target: str) -> Path:
    """A private folder to build a target in, named with this process's id so that a later
    build can tell a dead build's leftovers (remove_stale) from a running one's."""
    return Path(tempfile.mkdtemp(prefix=f".staging-{target}-{os.getpid()}-", dir=model_dir))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(model_dir: Path) -> list[str]:
    """Remove staging folders of builds that are no longer running (killed with SIGKILL, or
    the machine went down) and old copies a swap left behind; their names."""
    removed = []
    if not model_dir.is_dir():
        return removed
    for path in model_dir.iterdir():
        found = STAGING.match(path.name)
        stale = (found and not _alive(int(found.group(1)))) or path.name.startswith(".old-")
        if stale and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def readable(folder: Path) -> None:
    """Folders 0755 and files 0644 (0755 when executable), whatever made them: mkdtemp gives
    0700, and a web server running as another user must be able to serve a target folder."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


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
    readable(staging)
    replace_dir(staging, final)
    return (not ok) and (model_dir / target).is_dir()
