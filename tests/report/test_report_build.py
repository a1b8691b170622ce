"""The report, the JUnit file, the checksums and `deployer merge` on real builds of the example:
one build of two targets, each target built again on its own without the cache (as CI jobs
would), then merged. The merged folder must be the combined build, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import xmlschema

from deployer.report.summary import artifact_id
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy

SPEC = ROOT / "examples" / "shapes" / "shapes.toml"
# Every backend whose bytes could vary from build to build: ONNX (and its INT8), OpenVINO
# (NNCF), TF.js, the demo page's screenshot, the split full-integer TFLite, CoreML; a bundle.
PROFILES = {
    "cia": """name = "cia"
page = true
[[artifacts]]
backend = "onnx"
precision = "fp32"
[[artifacts]]
backend = "onnx"
precision = "int8"
[[artifacts]]
backend = "openvino"
precision = "int8"
runtime_settings = { precision_hint = "f32" }
[[artifacts]]
backend = "tfjs"
precision = "fp32"
runtime = ["tfjs-node"]
""",
    "cib": """name = "cib"
bundle = true
[[artifacts]]
backend = "tflite"
precision = "int8"
options = { io = "int8" }
[[artifacts]]
backend = "coreml"
precision = "fp16"
""",
}
TIMES = {"stages", "stage_seconds", "build_seconds", "seconds", "ms_median"}   # times, not results


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    profiles = {}
    for name, text in PROFILES.items():
        profiles[name] = root / f"{name}.toml"
        profiles[name].write_text(text)
    combined = run_cli("build", str(SPEC), "--target", str(profiles["cia"]), "--target", str(profiles["cib"]),
                       "--out", str(root / "combined"), "--junit", str(root / "junit.xml"))
    jobs = {name: run_cli("build", str(SPEC), "--target", str(path), "--out", str(root / f"job-{name}"), "--no-cache")
            for name, path in profiles.items()}
    merged = run_cli("merge", str(root / "job-cia"), str(root / "job-cib"), "--out", str(root / "merged"), "--json")
    return root, profiles, combined, jobs, merged


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "shapes" / "manifest.json").read_text())


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_build_ends_with_a_line_per_target_and_checksums_that_verify(builds):
    root, _, combined, jobs, _ = builds
    assert combined.returncode == 0, combined.stdout + combined.stderr
    assert all(j.returncode == 0 for j in jobs.values()), [j.stdout[-2000:] for j in jobs.values()]
    assert "cia: built, 4 artifacts: 4 pass" in combined.stdout
    assert "cib: built, 2 artifacts: 2 pass" in combined.stdout
    model_dir = root / "combined" / "shapes"
    listed = (model_dir / "SHA256SUMS").read_text()
    assert "cia/shapes_fp32.onnx" in listed and "shapes-cib-1.0.0.tar.gz" in listed and ".work" not in listed
    check = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=model_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    host = _manifest(root / "combined")["host"]
    assert host["cpu"] and host["machine"] and isinstance(host["cpu_flags"], list)


def test_report_renders_in_chromium_with_a_plot_and_an_overlay_per_artifact(builds):
    root = builds[0]
    model_dir = root / "combined" / "shapes"
    manifest = _manifest(root / "combined")
    js = ROOT / "deployer" / "runtimes" / "js"
    done = subprocess.run(["node", str(Path(__file__).with_name("render_check.mjs")), str(model_dir / "report.html"),
                           str(root / "report.png")], cwd=js, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["errors"] == [] and found["requests"] == []      # renders, self-contained
    assert found["images"] == 3 and all(h == "data:image/jpeg;base64," for h in found["imageHrefs"])
    sections = {s["id"]: s for s in found["sections"]}
    assert set(sections) == {artifact_id(a) for a in manifest["artifacts"]}
    for s in sections.values():
        assert s["charts"] >= 2 and s["overlays"] == 6, s          # histogram + per-class AP; 3 image pairs
    assert found["tradeOffCharts"] >= 1
    assert (root / "report.png").stat().st_size > 10_000
    md = (model_dir / "report.md").read_text()
    assert "cia: built" in md and "| cib | coreml fp16 | coreml |" in md


def test_junit_validates_with_a_case_per_artifact_and_runtime(builds):
    root = builds[0]
    schema = xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd")))
    schema.validate(str(root / "junit.xml"))
    manifest = _manifest(root / "combined")
    runs = sum(len(a["parity"].get("runs", [a["parity"]])) for a in manifest["artifacts"])
    pages = sum(1 for t in manifest["targets"].values() if t.get("page"))   # a case per demo page check
    doc = schema.to_dict(str(root / "junit.xml"))
    assert pages and int(doc["@tests"]) == runs + pages and int(doc["@failures"]) == 0


def test_separate_no_cache_builds_merge_into_the_combined_build(builds):
    root, _, _, _, merged = builds
    assert merged.returncode == 0, merged.stdout + merged.stderr
    summary = json.loads(merged.stdout)
    assert [t["target"] for t in summary["targets"]] == ["cia", "cib"] and summary["exit_status"] == 0
    combined, joined = root / "combined" / "shapes", root / "merged" / "shapes"
    # Byte for byte: two builds without the cache (and their merge) give the same files.
    assert (joined / "SHA256SUMS").read_text() == (combined / "SHA256SUMS").read_text()
    assert _without_times(_manifest(root / "merged")) == _without_times(_manifest(root / "combined"))
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=joined).returncode == 0
    assert (joined / "report.html").is_file() and (joined / "report.md").is_file()


def test_out_of_reach_threshold_is_a_failing_junit_case(builds, tmp_path):
    root = builds[0]
    strict = tmp_path / "strict.toml"
    strict.write_text('name = "strict"\n[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n'
                      '[artifacts.thresholds]\nmax_abs = 0.0\n')
    out = tmp_path / "dist"
    shutil.copytree(root / "combined" / "shapes" / ".work" / "cache", out / "shapes" / ".work" / "cache")
    result = run_cli("build", str(SPEC), "--target", str(strict), "--out", str(out), "--junit",
                     str(tmp_path / "junit.xml"), "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)                    # stdout is the JSON alone
    assert summary["exit_status"] == 1 and summary["targets"][0]["fail"] == 1
    assert "strict: failed" in result.stderr               # the tables and lines went to stderr
    schema = xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd")))
    schema.validate(str(tmp_path / "junit.xml"))
    doc = schema.to_dict(str(tmp_path / "junit.xml"))
    case = doc["testsuite"][0]["testcase"][0]
    assert "max_abs" in case["failure"]["@message"] and doc["@failures"] == 1
