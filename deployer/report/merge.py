"""`deployer merge DIR...`: one model folder from builds of separate targets (a CI matrix with a
job per target), as if one build had made them all: the target folders and bundles copied in,
the manifests combined (report/manifest.merge_manifest, the same rule a build uses), then
SHA256SUMS and the reports written for the whole.

Refused, before anything is written (the --out folder included): folders of different models,
of different source models (sha256) or evaluation sets (their parity would not compare), a
target built twice, artifact files changed since they were verified. Everything is copied into
staging folders first and swapped in only when every copy succeeded, so a copy that fails
midway (a dangling symlink, a full disk) leaves the output as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deployer.errors import UserError
from deployer.report import checksums
from deployer.report.html import HTML
from deployer.report.manifest import MANIFEST, merge_manifest, read_manifest
from deployer.report.publish import publish
from deployer.report.summary import log_file
from deployer.staging import REJECTED, new_staging, replace_dir


def model_folder(path: Path) -> tuple[Path, dict]:
    """A build's model folder (holding manifest.json) from it or from the --out folder above it."""
    if not path.is_dir():
        raise UserError(f"{path}: not a folder; give the --out folder of a 'deployer build' or its <model>/ folder")
    if (path / MANIFEST).is_file():
        return read_manifest(path)
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
    if not found:
        raise UserError(f"{path}: no {MANIFEST} in it or in its subfolders; give the --out folder of a "
                        "'deployer build'")
    if len(found) > 1:
        raise UserError(f"{path}: holds several models ({', '.join(p.name for p in found)}); give one <model>/ folder")
    return read_manifest(found[0])


def _same(what: str, values: list[tuple[Path, object]]) -> None:
    first_dir, first = values[0]
    for folder, value in values[1:]:
        if value != first:
            raise UserError(f"{folder}: {what} differs from {first_dir}'s ({value} vs {first}); merge only builds "
                            "of the same spec, source model and evaluation images")


def _check_files(folder: Path, manifest: dict) -> None:
    """Every artifact file as it was verified: a changed or missing one is refused (merging it
    would write a SHA256SUMS that vouches for what was never verified)."""
    for name, how in checksums.changed(folder, manifest).items():
        path = folder / name
        if how == "missing":
            raise UserError(f"{path}: missing, though {folder / MANIFEST} lists it; rebuild that target or merge "
                            "the job's complete output")
        raise UserError(f"{path}: changed since it was built and verified (sha256 differs from {folder / MANIFEST}); "
                        "rebuild that target or download it again")


def check(dirs: list[Path]) -> list[tuple[Path, dict]]:
    """The builds in `dirs` with their manifests, refused when they cannot be merged; writes nothing."""
    sources = [model_folder(d) for d in dirs]
    _same("the model", [(d, m["model"]) for d, m in sources])
    _same("the source model's sha256", [(d, (m.get("source") or {}).get("sha256")) for d, m in sources])
    _same("the evaluation set", [(d, {k: (m.get("evaluation") or {}).get(k) for k in ("images", "labelled")})
                                 for d, m in sources])
    # The first evaluation images by name, and the network input they were prepared for: a
    # build on another set or with other preprocessing is not comparable.
    _same("the evaluation images", [(d, [Path(str(x.get("image", ""))).name for x in
                                         (m.get("evaluation") or {}).get("samples") or []]) for d, m in sources])
    _same("the network input", [(d, (m.get("evaluation") or {}).get("sample_input")) for d, m in sources])
    for folder, manifest in sources:
        _check_files(folder, manifest)
    seen: dict[str, Path] = {}
    for folder, manifest in sources:
        if not manifest.get("targets"):
            raise UserError(f"{folder / MANIFEST}: lists no targets; nothing to merge from it")
        for target in manifest["targets"]:
            if target in seen:
                raise UserError(f"target {target!r} is in both {seen[target]} and {folder}; merge each target once")
            seen[target] = folder
    return sources


def merge(sources: list[tuple[Path, dict]], out: Path) -> tuple[Path, dict]:
    """Merge the builds `check` accepted into `out`/<model>/; its folder and manifest."""
    model = sources[0][1]["model"]
    dest = out / model
    inputs = {d.resolve() for d, _ in sources}
    if dest.exists() and dest.resolve() not in inputs and any(dest.iterdir()):
        raise UserError(f"{dest}: exists and is not one of the folders merged; choose another --out or add it as "
                        "an input")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path, Path]] = []   # (staging folder, copy in it, where the copy goes)
    try:
        for folder, manifest in sources:
            if folder.resolve() != dest.resolve():
                _stage_targets(folder, dest, manifest, staged)
    except BaseException:
        for staging, _, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    for staging, copy, final in staged:   # renames only, once every copy is complete
        final.parent.mkdir(parents=True, exist_ok=True)
        if copy == staging:
            replace_dir(copy, final)
        else:
            os.replace(copy, final)
            staging.rmdir()

    merged: dict | None = None
    earlier = []
    for folder, manifest in sources:
        if folder.resolve() != dest.resolve():
            _bring_logs(folder, dest, manifest)
        earlier.append(folder / HTML)
        results = {t: ([a for a in manifest["artifacts"] if a["target"] == t], status)
                   for t, status in manifest["targets"].items()}
        record = {k: v for k, v in manifest.items() if k not in ("targets", "artifacts")}
        if merged is not None:   # the build-wide record stays the first one's, with what it lacks
            record = {**record, **{k: v for k, v in merged.items() if k not in ("targets", "artifacts")
                                   and v is not None}}
        merged = merge_manifest(merged, record, results)
    publish(dest, merged, earlier)
    return dest, merged


def _stage_targets(src: Path, dest: Path, manifest: dict, staged: list[tuple[Path, Path, Path]]) -> None:
    """Copies of each target's folder (or its rejected one) and bundles beside their final
    places in `dest`, named so that a later build removes them if this process dies
    (staging.remove_stale), added to `staged` as (staging folder, copy, final place) before the
    copy starts, so that a failed copy is removed with the rest."""
    for target in manifest["targets"]:
        for rel in (Path(target), Path(REJECTED) / target):
            if (src / rel).is_dir():
                staging = new_staging(dest, f"merge-{target}")
                staged.append((staging, staging, dest / rel))
                staging.rmdir()   # copytree makes it
                _copy(shutil.copytree, src / rel, staging)
        for bundle in sorted(src.glob(f"{manifest['model']}-{target}-*.tar.gz")):
            tmp = new_staging(dest, f"merge-{target}")
            staged.append((tmp, tmp / bundle.name, dest / bundle.name))
            _copy(shutil.copyfile, bundle, tmp / bundle.name)


def _copy(copier, src: Path, dst: Path) -> None:
    try:
        copier(src, dst)
    except shutil.Error as exc:   # copytree gathers its failures: (source, destination, why)
        first = exc.args[0][0] if exc.args and isinstance(exc.args[0], list) and exc.args[0] else (src, dst, exc)
        raise UserError(f"{first[0]}: cannot be copied into the merged folder ({first[2]}); fix or remove it in "
                        f"{src} and merge again (nothing was changed in {dst.parent})") from None
    except OSError as exc:
        raise UserError(f"{exc.filename or src}: cannot be copied into the merged folder "
                        f"({exc.strerror or exc}); nothing was changed in {dst.parent}") from None


def _bring_logs(src: Path, dest: Path, manifest: dict) -> None:
    """The log file each failure names, copied into the merged folder's .work/logs/ (a CI job
    uploads its logs with its folder) and the error pointed at the copy: the path the job wrote
    is on a machine that is gone. A log that did not come along stays named as it was."""
    logs = dest / ".work" / "logs"
    for entry in manifest["artifacts"]:
        found = log_file(entry.get("error") or "")
        if not found or not (src / ".work" / "logs" / Path(found).name).is_file():
            continue
        copy = logs / Path(found).name
        try:
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / ".work" / "logs" / Path(found).name, copy)
        except OSError:
            continue   # a log is help for a reader, not part of the build: the merge goes on
        entry["error"] = entry["error"].replace(f"(log: {found})", f"(log: {copy.resolve()})")
