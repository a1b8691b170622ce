"""End-to-end builds of the tiny detector: real artifacts, real runtimes, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy


def _manifest(dist: Path, model: str = "tiny") -> dict:
    return json.loads((dist / model / "manifest.json").read_text())


def _leftovers(model_dir: Path) -> list[str]:
    return [p.name for p in model_dir.iterdir() if p.name.startswith((".staging-", ".old-"))]


# The untrained tiny model detects nothing, so agreement mAP cannot judge its INT8 artifacts:
# the bundled profiles are built with a tensor threshold added for int8, which must pass.
INT8_COSINE = 0.95


@pytest.fixture(scope="module")
def built(tiny_project, tmp_path_factory):
    """One build of the three bundled targets web, android, embedded (shared by the tests below)."""
    from tests.conftest import write_spec

    folder = tmp_path_factory.mktemp("build")
    src = f'kind = "torch"\nfactory = "tinydet:build"\npython_path = ["{ROOT}", "{tiny_project}"]'
    spec = write_spec(folder, source=src, data=tiny_project / "data")
    targets = []
    for name in ("web", "android", "embedded"):
        profile = folder / f"{name}.toml"
        profile.write_text((ROOT / "targets" / f"{name}.toml").read_text()
                           + f"\n[thresholds.int8]\nmin_cosine = {INT8_COSINE}\n")
        targets += ["--target", str(profile)]
    dist = folder / "dist"
    result = run_cli("build", str(spec), *targets, "--out", str(dist))
    return spec, dist, result, targets


def test_three_targets_build_and_pass(built):
    spec, dist, result, _ = built
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = _manifest(dist)
    by_backend = {a["backend"]: a for a in manifest["artifacts"] if a["precision"] == "fp32"}
    assert set(by_backend) == {"onnx", "tflite", "openvino", "tfjs"}
    for entry in manifest["artifacts"]:
        assert entry["status"] == "built"
        assert (dist / "tiny" / entry["path"]).is_file()
        assert len(entry["sha256"]) == 64 and entry["size_bytes"] > 1000
        parity = entry["parity"]
        assert parity["images"] == 8
        assert parity["verdict"] == "pass", parity
        if entry["precision"] == "int8":
            assert parity["thresholds"]["min_cosine"] == INT8_COSINE
            assert parity["detection"]["reference_detections"] == 0   # nothing to agree with (see above)
            assert min(o["cosine"] for o in parity["outputs"].values()) >= INT8_COSINE
            continue
        for name in ("boxes", "scores"):
            assert parity["outputs"][name]["cosine"] >= (0.99999 if entry["precision"] == "fp32" else 0.9995)
            assert parity["outputs"][name]["snr_db"] > (80 if entry["precision"] == "fp32" else 40)
    assert by_backend["openvino"]["parity"]["settings"]["precision_hint"] == "f32"
    assert by_backend["tflite"]["parity"]["runtime"] == "litert"
    assert manifest["onnx"]["exporter"] in ("dynamo", "torchscript")
    assert manifest["toolchain"]["onnx"] == "1.19.1"
    assert "deployer parity: tiny" in result.stdout and "litert" in result.stdout
    assert _leftovers(dist / "tiny") == []


def test_onnx_artifact_carries_metadata(built):
    import onnx

    _, dist, _, _ = built
    model = onnx.load(str(dist / "tiny" / "web" / "tiny_fp32.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["deployer.labels"]) == ["circle", "square", "triangle", "star"]
    assert json.loads(meta["deployer.preprocess"])["resize"] == "letterbox"
    assert len(meta["deployer.source_sha256"]) == 64
    assert "torch" in json.loads(meta["deployer.toolchain"])


def test_verify_reruns_parity_and_catches_tampering(built):
    _, dist, _, _ = built
    result = run_cli("verify", str(dist / "tiny"))
    assert result.returncode == 0, result.stdout + result.stderr
    onnx_file = dist / "tiny" / "web" / "tiny_fp32.onnx"
    original = onnx_file.read_bytes()
    try:
        onnx_file.write_bytes(original[:-10] + b"0123456789")
        result = run_cli("verify", str(dist / "tiny"))
        assert result.returncode == 1
        assert "changed since it was built" in result.stdout
    finally:
        onnx_file.write_bytes(original)


def test_crashing_target_fails_alone_and_leaves_nothing(built, tmp_path):
    spec, dist, _, _ = built
    crash = tmp_path / "crashy.toml"
    crash.write_text('name = "crashy"\n[[artifacts]]\nbackend = "tests.stages.crashing:segfault"\n'
                     'precision = "fp32"\nruntime = "onnxruntime"\n')
    before = (dist / "tiny" / "web" / "tiny_fp32.onnx").read_bytes()
    result = run_cli("build", str(spec), "--target", "web", "--target", str(crash), "--out", str(dist))
    assert result.returncode == 1
    manifest = _manifest(dist)
    crashed = [a for a in manifest["artifacts"] if a["target"] == "crashy"]
    assert crashed and crashed[0]["status"] == "failed" and "SIGSEGV" in crashed[0]["error"]
    assert manifest["targets"]["web"]["status"] == "built"
    assert (dist / "tiny" / "web" / "tiny_fp32.onnx").read_bytes() == before
    assert not (dist / "tiny" / "crashy").exists()
    assert _leftovers(dist / "tiny") == []
    # The other targets built earlier are still listed.
    assert {a["target"] for a in manifest["artifacts"]} >= {"web", "android", "embedded", "crashy"}


def test_failed_rebuild_keeps_previous_good_build(built, tmp_path):
    spec, dist, _, _ = built
    broken_web = tmp_path / "web.toml"
    broken_web.write_text('name = "web"\n[[artifacts]]\nbackend = "tests.stages.crashing:raise_error"\n'
                          'precision = "fp32"\nruntime = "onnxruntime"\n')
    before = sorted(p.name for p in (dist / "tiny" / "web").iterdir())
    result = run_cli("build", str(spec), "--target", str(broken_web), "--out", str(dist))
    assert result.returncode == 1
    assert "converter exploded" in result.stdout
    assert sorted(p.name for p in (dist / "tiny" / "web").iterdir()) == before
    manifest = _manifest(dist)
    assert manifest["targets"]["web"]["kept_previous_build"] is True
    kept = [a for a in manifest["artifacts"] if a["target"] == "web" and a["status"] == "built"]
    assert kept and kept[0]["superseded_by_failed_build"] is True
    # The report says what web/ holds now, not only that the rebuild failed.
    said = f"the previous good build ({len(kept)} artifact"
    assert said in " ".join(result.stdout.split()) and said in (dist / "tiny" / "report.md").read_text()
    assert said in (dist / "tiny" / "report.html").read_text()
    assert _leftovers(dist / "tiny") == []


def test_threshold_out_of_reach_rejects_target(built, tmp_path):
    spec, dist, _, _ = built
    strict = tmp_path / "strict.toml"
    strict.write_text('name = "strict"\n[[artifacts]]\nbackend = "openvino"\nprecision = "fp32"\n'
                      'runtime_settings = { precision_hint = "bf16" }\n'
                      '[artifacts.thresholds]\nmax_abs = 0.0\n')
    result = run_cli("build", str(spec), "--target", str(strict), "--out", str(dist))
    assert result.returncode == 1
    entry = next(a for a in _manifest(dist)["artifacts"] if a["target"] == "strict")
    assert entry["parity"]["verdict"] == "fail" and "max_abs" in entry["parity"]["reasons"][0]
    assert not (dist / "tiny" / "strict").exists()
    assert (dist / "tiny" / ".rejected" / "strict" / "tiny_fp32.xml").is_file()


def _figures(manifest: dict, target: str) -> dict:
    return {(a["backend"], a["precision"]): (a["sha256"], a["parity"]["verdict"],
                                             {k: v for k, v in a["parity"].items() if k in ("outputs", "detection")})
            for a in manifest["artifacts"] if a["target"] == target}


def test_unchanged_rebuild_reuses_every_stage(built, tmp_path):
    spec, dist, first, targets = built
    before = _figures(_manifest(dist), "android")
    result = run_cli("build", str(spec), "--target", targets[3], "--out", str(dist))   # android, again
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = _manifest(dist)
    assert all(s["reused"] for s in manifest["stages"] if s["step"] != "inputs")
    android = [a for a in manifest["artifacts"] if a["target"] == "android"]
    assert android and all(s["reused"] for a in android for s in a["stages"])
    assert _figures(manifest, "android") == before   # the very same artifacts and figures
    assert "reused from the cache" in result.stdout


def test_changed_threshold_is_judged_again_without_running_anything(built, tmp_path):
    spec, dist, _, _ = built
    strict = tmp_path / "strict-embedded.toml"
    strict.write_text((ROOT / "targets" / "embedded.toml").read_text().replace('name = "embedded"',
                                                                               'name = "strict-embedded"')
                      + "\n[thresholds.fp32]\nmin_cosine = 1.5\n")
    result = run_cli("build", str(spec), "--target", str(strict), "--out", str(dist))
    assert result.returncode == 1
    entries = [a for a in _manifest(dist)["artifacts"] if a["target"] == "strict-embedded"]
    fp32 = next(a for a in entries if a["precision"] == "fp32")
    assert fp32["parity"]["verdict"] == "fail" and "needs >= 1.5" in fp32["parity"]["reasons"][0]
    assert all(s["reused"] for a in entries for s in a["stages"]), "built and ran before, under 'embedded'"
    assert (dist / "tiny" / ".rejected" / "strict-embedded").is_dir()


def test_no_cache_runs_every_stage_again(built):
    spec, dist, _, targets = built
    result = run_cli("build", str(spec), "--target", targets[5], "--out", str(dist), "--no-cache")  # embedded
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = _manifest(dist)
    embedded = [a for a in manifest["artifacts"] if a["target"] == "embedded"]
    assert not any(s["reused"] for s in manifest["stages"])
    assert embedded and not any(s["reused"] for a in embedded for s in a["stages"])
