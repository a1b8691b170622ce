"""The stage cache (docs/ARCHITECTURE.md, "Cache"): every stage's product kept under the hash
of its inputs, so an unchanged rebuild reuses everything and a changed threshold re-judges
without rebuilding.

An entry is a folder `.work/cache/<kind>/<key>/` holding the stage's files and `value.json`
(the stage's JSON result), written last: an entry without it is incomplete and ignored.
Keys hash the stage's own inputs (content hashes of files, options, spec) with a salt of
the toolchain's versions and deployer's own source, so upgrading a converter or changing
deployer's code invalidates what they made. `--no-cache` reads nothing but still writes,
so the run after it is warm.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from functools import cache as memoize
from pathlib import Path

from deployer import toolchain
from deployer.hashing import cache_key, sha256_of

VALUE = "value.json"


@memoize
def salt() -> str:
    """Toolchain versions and a hash of deployer's own source files (code changes invalidate)."""
    root = Path(__file__).resolve().parent
    sources = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".mjs", ".html") and "node_modules" not in p.parts)
    code = cache_key(*[(str(p.relative_to(root)), sha256_of(p)) for p in sources])
    return cache_key(toolchain.versions(), code)


@dataclass
class Hit:
    folder: Path
    value: dict


class Cache:
    def __init__(self, root: Path, read: bool = True):
        self.root, self.read = Path(root), read

    def key(self, kind: str, *parts) -> str:
        return cache_key(kind, salt(), *parts)

    def folder(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Hit | None:
        """A complete entry, unless reading is off (--no-cache)."""
        folder = self.folder(kind, key)
        if not self.read or not (folder / VALUE).is_file():
            return None
        try:
            return Hit(folder, json.loads((folder / VALUE).read_text()))
        except (OSError, json.JSONDecodeError):
            return None   # a damaged entry is a miss; the stage runs again and replaces it

    def new_folder(self, kind: str) -> Path:
        """A private folder to run a stage into; `put` moves it into place."""
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root / kind))

    def put(self, kind: str, key: str, folder: Path, value) -> Hit:
        """Seal `folder` (from new_folder, holding the stage's files) as the entry for `key`."""
        (folder / VALUE).write_text(json.dumps(value))
        final = self.folder(kind, key)
        if final.exists():   # a previous or concurrent entry: replace it whole
            old = final.with_name(f".old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, final)
        return Hit(final, value)

    def discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def cached(self, kind: str, key: str, make, reuse: bool = True) -> tuple[Hit, bool]:
        """The entry for `key`, made by `make(folder) -> value` unless it is there to reuse;
        returns (entry, reused). A `make` that raises leaves no entry behind."""
        hit = self.get(kind, key) if reuse else None
        if hit is not None:
            return hit, True
        folder = self.new_folder(kind)
        try:
            value = make(folder)
        except BaseException:
            self.discard(folder)
            raise
        return self.put(kind, key, folder, value), False


def copy_files(src: Path, names: list[str], dest: Path) -> None:
    """Copy an entry's files (relative names, folders allowed) into `dest`: copies, never
    links, so a file edited in dist/ cannot change what the cache holds."""
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, target)
