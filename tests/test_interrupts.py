"""Ctrl-C, SIGTERM and SIGKILL during a real build: the build stops within seconds, its
workers die with it, nothing half-done lands, and dist/ agrees with manifest.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.staging import readable, remove_stale
from tests.conftest import ROOT, write_spec

pytestmark = pytest.mark.heavy


def _children(pid: int) -> set[int]:
    """Every process descending from `pid` (workers and what they started)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == parent and int(entry.name) not in found:
                    found.add(int(entry.name))
                    todo.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


LIGHT = 'name = "light"\n[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n'
SLOW = 'name = "slow"\n[[artifacts]]\nbackend = "tflite"\nprecision = "fp32"\n'   # onnx2tf: seconds of work


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("profiles")
    (folder / "light.toml").write_text(LIGHT)
    (folder / "slow.toml").write_text(SLOW)
    return str(folder / "light.toml"), str(folder / "slow.toml")


@pytest.fixture(scope="module")
def light_build(tiny_project, tmp_path_factory, profiles) -> tuple[Path, Path]:
    """A finished build of the light target (the previous good build an interrupt must keep)."""
    folder = tmp_path_factory.mktemp("light")
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = write_spec(folder, source=src, data=tiny_project / "data")
    first = subprocess.run([sys.executable, "-m", "deployer.cli", "build", str(spec), "--target", profiles[0],
                            "--out", str(folder / "dist")], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    return spec, folder / "dist"


def _start(spec: Path, out: Path, *targets: str) -> subprocess.Popen:
    args = [a for t in targets for a in ("--target", t)]
    return subprocess.Popen([sys.executable, "-m", "deployer.cli", "build", str(spec), *args, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, text: str, limit: float = 240) -> list[str]:
    """Read the build's progress lines until one contains `text`."""
    seen, start = [], time.monotonic()
    for line in proc.stdout:
        seen.append(line)
        if text in line or time.monotonic() - start > limit:
            return seen
    return seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_build_and_keeps_dist_and_manifest_in_agreement(light_build, tmp_path, profiles, sig):
    light, slow = profiles
    tiny_spec, built = light_build
    out = tmp_path / "dist"
    shutil.copytree(built, out)
    model_dir = out / "tiny"
    before = json.loads((model_dir / "manifest.json").read_text())

    proc = _start(tiny_spec, out, light, slow)
    _wait_for(proc, "slow/")                    # the slow target's stages are running
    workers = _children(proc.pid)
    assert workers
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "the build did not stop promptly"
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "workers outlived the build"
    names = sorted(p.name for p in model_dir.iterdir())
    assert not [n for n in names if n.startswith((".staging", ".old-"))] and "slow" not in names
    after = json.loads((model_dir / "manifest.json").read_text())
    assert set(after["targets"]) == set(before["targets"]) == {"light"}
    for entry in after["artifacts"]:
        assert (model_dir / entry["path"]).exists()
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=model_dir)
    assert check.returncode == 0


def test_sigkilled_build_leaves_nothing_running_and_the_next_build_cleans_up(tiny_spec, tmp_path, profiles):
    _, slow = profiles
    out = tmp_path / "dist"
    proc = _start(tiny_spec, out, slow)
    _wait_for(proc, "slow/")
    workers = _children(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "orphaned workers keep running"
    staged = [p for p in (out / "tiny").iterdir() if p.name.startswith(".staging-slow-")]
    assert staged                              # what a SIGKILL leaves...
    again = subprocess.run([sys.executable, "-m", "deployer.cli", "build", str(tiny_spec), "--target", slow,
                            "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [p for p in (out / "tiny").iterdir() if p.name.startswith(".staging")]   # ...the next build removes
    assert oct((out / "tiny" / "slow").stat().st_mode & 0o777) == "0o755"


def test_remove_stale_keeps_running_builds_and_readable_sets_modes(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".staging-web-{dead.stdout.strip()}-abc123").mkdir()
    (tmp_path / f".staging-web-{os.getpid()}-def456").mkdir()
    (tmp_path / ".old-web-1234abcd").mkdir()
    (tmp_path / "web").mkdir()
    assert sorted(remove_stale(tmp_path)) == [".old-web-1234abcd", f".staging-web-{dead.stdout.strip()}-abc123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".staging-web-{os.getpid()}-def456", "web"]
    folder = tmp_path / "web"
    folder.chmod(0o700)
    (folder / "sub").mkdir(mode=0o700)
    (folder / "sub" / "a.bin").write_bytes(b"a")
    (folder / "sub" / "a.bin").chmod(0o600)
    (folder / "run.py").write_text("")
    (folder / "run.py").chmod(0o700)
    readable(folder)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (folder, folder / "sub", folder / "sub" / "a.bin",
                                                              folder / "run.py")}
    assert modes == {"web": "0o755", "sub": "0o755", "a.bin": "0o644", "run.py": "0o755"}
