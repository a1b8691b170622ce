"""Shared fixtures: a small real detector, its spec and small real datasets, built on the fly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FACTORY = '''
import torch
from examples.shapes.model import ShapesDet

def build():
    torch.manual_seed(0)
    return ShapesDet(num_classes=4, image_size=64, width=4).eval()

def build_wrong_classes():
    return ShapesDet(num_classes=3, image_size=64, width=4).eval()
'''


def write_spec(folder: Path, *, name: str = "tiny", source: str | None = None, extra: str = "",
               data: Path | None = None) -> Path:
    """A model spec for the tiny detector; `source` replaces the [source] body."""
    source = source or f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}"]'
    data_block = f'[data]\ncalibration = "{data / "calib"}"\nevaluation = "{data / "eval"}"\n' \
                 f'calibration_images = 8\nevaluation_images = 8\n' if data else ""
    text = textwrap.dedent(f'''\
        name = "{name}"
        labels = ["circle", "square", "triangle", "star"]
        {extra}
        [source]
        {{source}}

        [[inputs]]
        name = "images"
        shape = [1, 3, 64, 64]
        layout = "NCHW"

        [outputs]
        names = ["boxes", "scores"]

        [head]
        type = "boxes_scores"
        boxes = "boxes"
        scores = "scores"

        {{data}}''').format(source=source, data=data_block)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A folder with the tiny detector's factory module and small COCO datasets."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tinydet.py").write_text(FACTORY)
    for sub, seed in (("calib", 7), ("eval", 8)):
        subprocess.run([sys.executable, "-m", "deployer.cli", "data", "synth", str(folder / "data" / sub),
                        "--count", "8", "--seed", str(seed)], check=True, cwd=ROOT, capture_output=True)
    return folder


@pytest.fixture()
def tiny_spec(tiny_project, tmp_path) -> Path:
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    return write_spec(tmp_path, source=src, data=tiny_project / "data")


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer.cli", *args], cwd=cwd, capture_output=True, text=True)


BUNDLED_DATA = ROOT / "calibration"


def detector_spec(folder: Path, name: str, *, source: str, shape: list[int], outputs: list[str], head: str,
                  layout: str = "NCHW", preprocess: str = "", labels: tuple = ("circle", "square", "triangle", "star"),
                  calibration_images: int = 8, evaluation_images: int = 8) -> Path:
    """A model spec for a test detector: `source`, `head` and `preprocess` are the bodies of
    their tables (TOML lines); data is the bundled calibration and evaluation sets."""
    body = "\n".join([
        f'name = "{name}"', f"labels = {list(labels)!r}".replace("'", '"'),
        "[source]", source,
        "[[inputs]]", 'name = "images"', f"shape = {list(shape)}", f'layout = "{layout}"',
        "[outputs]", "names = " + repr(list(outputs)).replace("'", '"'),
        *(["[preprocess]", preprocess] if preprocess else []),
        "[head]", head,
        "[data]", f'calibration = "{BUNDLED_DATA / "calib"}"', f'evaluation = "{BUNDLED_DATA / "eval"}"',
        f"calibration_images = {calibration_images}", f"evaluation_images = {evaluation_images}", ""])
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path
