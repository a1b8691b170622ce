"""Web artifacts run in ONNX Runtime Web and TF.js, in Node and in headless Chromium, and
the demo page draws the detections the source model makes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy

PROFILE = """
name = "webcheck"
page = true
[[artifacts]]
backend = "onnx"
precision = "fp32"
runtime = ["ort-web-node", "ort-web-chromium"]
[[artifacts]]
backend = "tfjs"
precision = "fp32"
runtime = ["tfjs-node", "tfjs-chromium"]
"""


@pytest.fixture(scope="module")
def web_build(tmp_path_factory):
    # The trained example, so that the page has real objects to draw.
    folder = tmp_path_factory.mktemp("web")
    profile = folder / "webcheck.toml"
    profile.write_text(PROFILE)
    dist = folder / "dist"
    result = run_cli("build", str(ROOT / "examples/shapes/shapes.toml"), "--target", str(profile), "--out", str(dist))
    manifest = json.loads((dist / "shapes" / "manifest.json").read_text())
    return dist / "shapes", manifest, result


def test_web_artifacts_pass_in_node_and_chromium(web_build):
    model_dir, manifest, result = web_build
    assert result.returncode == 0, result.stdout + result.stderr
    entries = {a["backend"]: a for a in manifest["artifacts"] if a["target"] == "webcheck"}
    assert set(entries) == {"onnx", "tfjs"}
    for backend, runtimes in (("onnx", {"ort-web-node", "ort-web-chromium"}), ("tfjs", {"tfjs-node", "tfjs-chromium"})):
        parity = entries[backend]["parity"]
        assert {r["runtime"] for r in parity["runs"]} == runtimes
        for run in parity["runs"]:
            assert run["verdict"] == "pass"
            assert min(o["cosine"] for o in run["outputs"].values()) >= 0.99999
            assert run["detection"]["agreement_map50"] >= 0.99
        chromium = next(r for r in parity["runs"] if r["runtime"].endswith("chromium"))
        assert chromium["settings"]["where"] == "chromium" and chromium["settings"]["browser"]
    # The top level is the worst run.
    worst = min(min(o["cosine"] for o in r["outputs"].values()) for r in entries["onnx"]["parity"]["runs"])
    assert min(o["cosine"] for o in entries["onnx"]["parity"]["outputs"].values()) == worst


def test_tfjs_model_is_sharded_with_metadata(web_build):
    model_dir, manifest, _ = web_build
    entry = next(a for a in manifest["artifacts"] if a["backend"] == "tfjs")
    model_json = json.loads((model_dir / entry["path"]).read_text())
    meta = model_json["userDefinedMetadata"]["deployer"]
    assert meta["labels"] == ["circle", "square", "triangle", "star"] and meta["preprocess"]["resize"] == "letterbox"
    shards = [p for group in model_json["weightsManifest"] for p in group["paths"]]
    assert len(shards) > 1 and all((model_dir / "webcheck" / "shapes_fp32" / p).is_file() for p in shards)


def test_demo_page_draws_the_reference_detections(web_build):
    model_dir, manifest, _ = web_build
    page = manifest["targets"]["webcheck"]["page"]
    assert page["verdict"] == "pass", page
    assert set(page["models"]) == {"onnx fp32", "tfjs fp32"}
    for figures in page["models"].values():
        assert figures["reference"] >= 3 and figures["recall"] >= 0.9 and figures["precision"] >= 0.9
    web = model_dir / "webcheck"
    for f in ("index.html", "app.mjs", "engine.mjs", "models.json", "vendor/ort/ort.wasm.min.js", "vendor/tf/tf.min.js"):
        assert (web / f).is_file(), f
    shot = np.asarray(Image.open(model_dir / page["screenshot"]).convert("RGB")).astype(int)
    # The page draws boxes in saturated label colours on top of the image.
    red = (shot[..., 0] > 200) & (shot[..., 1] < 60) & (shot[..., 2] < 90)
    assert shot.shape[0] > 300 and red.sum() > 50
