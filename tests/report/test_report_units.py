"""The report's parts on hand-made manifests: JUnit verdicts against the schema, summaries,
charts that parse, overlay differences, checksums, and what a merge refuses."""

from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from deployer.errors import UserError
from deployer.parity.tensor import tensor_metrics
from deployer.report import checksums, html, junit, overlays, svg
from deployer.report.merge import check, merge
from deployer.report.summary import line, target_summaries

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd")))


def _run(runtime, verdict, reasons=()):
    return {"runtime": runtime, "images": 8, "verdict": verdict, "reasons": list(reasons),
            "outputs": {"boxes": {"cosine": 0.99, "snr_db": 20.0, "max_abs": 1.0, "mean_abs": 0.1,
                                  "abs_error_hist": {"decades": list(range(-7, 4)), "counts": [1] * 12}}},
            "detection": {"agreement_map50": 0.95, "agreement_map50_95": 0.9, "per_class": {
                "cat": {"ap50": 0.5, "ap50_95": 0.3, "reference_ap50": 0.6, "reference_ap50_95": 0.35}},
                "samples": [[[1, 1, 10, 10, 0.9, 0]]]},
            "thresholds": {"min_agreement_map50": 0.9}}


def _entry(target, backend, precision, verdict, runtimes=("onnxruntime",)):
    runs = [_run(r, verdict, ["agreement_map50: 0.5 (needs >= 0.9)"] if verdict == "fail" else []) for r in runtimes]
    return {"target": target, "backend": backend, "precision": precision, "status": "built",
            "path": f"{target}/m_{precision}.onnx", "files": [f"{target}/m_{precision}.onnx"], "sha256": "ab" * 32,
            "size_bytes": 1000, "parity": {**runs[-1], "runs": runs},
            "stages": [{"step": "build", "seconds": 1.5, "reused": False},
                       {"step": f"verify {runtimes[0]}", "seconds": 0.5, "reused": False}]}


MANIFEST = {
    "model": "m", "deployer": "0.1.0", "labels": ["cat"], "host": {"cpu": "test cpu", "machine": "x86_64"},
    "evaluation": {"images": 8, "labelled": True, "samples": [{"image": "a.jpg", "reference": [[1, 1, 10, 10, 0.9, 0]]}],
                   "sample_input": {"width": 32, "height": 32, "resize": "stretch", "pad_value": 114}},
    "targets": {"web": {"status": "built"}, "android": {"status": "failed"}},
    "artifacts": [_entry("web", "onnx", "fp32", "pass", ("onnxruntime", "ort-web-node")),
                  _entry("web", "onnx", "int8", "unverified"),
                  _entry("android", "tflite", "int8", "fail"),
                  {"target": "android", "backend": "tflite", "precision": "fp16", "status": "failed",
                   "error": "tflite:build: converter exploded (log: /tmp/x/build.log)"}],
}


def test_junit_has_a_case_per_artifact_and_runtime_and_validates():
    root = junit.document(MANIFEST, ["web", "android"])
    SCHEMA.validate(ET.tostring(root, encoding="unicode"))
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("5", "1", "1", "1")
    web, android = root.findall("testsuite")
    assert [c.get("name") for c in web.findall("testcase")] == [
        "onnx fp32 @ onnxruntime", "onnx fp32 @ ort-web-node", "onnx int8 @ onnxruntime"]
    assert web.findall("testcase")[2].find("skipped") is not None
    failed = android.find("testcase/failure")
    assert "agreement_map50: 0.5" in failed.get("message")
    error = android.find("testcase/error")
    assert "converter exploded" in error.text
    out = web.find("testcase/system-out").text
    assert "cosine 0.990000" in out and "agreement_map50: 0.9500" in out


def test_junit_written_atomically_and_valid(tmp_path):
    path = junit.write(tmp_path / "results.xml", MANIFEST, ["web"])
    SCHEMA.validate(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["results.xml"]


def test_schema_rejects_what_ci_readers_would(tmp_path):
    # The schema is a real check: a case without a name, or two outcomes, does not pass.
    bad = ('<testsuites><testsuite name="s" tests="1"><testcase classname="c"><failure/><skipped/></testcase>'
           '</testsuite></testsuites>')
    assert not SCHEMA.is_valid(bad)


def test_summary_line_names_counts_and_problems():
    summaries = {s["target"]: s for s in target_summaries(MANIFEST)}
    assert summaries["web"]["pass"] == 1 and summaries["web"]["unverified"] == 1
    text = line(summaries["android"])
    assert text.startswith("android: failed, 2 artifacts: 1 fail, 1 failed")
    assert "converter exploded" in text and "agreement_map50" in text and "previous good build" not in text
    kept = {**MANIFEST, "targets": {**MANIFEST["targets"], "android": {"status": "failed", "kept_previous_build": True}},
            "artifacts": MANIFEST["artifacts"] + [{**_entry("android", "tflite", "int8", "pass"),
                                                   "superseded_by_failed_build": True}]}
    text = line({s["target"]: s for s in target_summaries(kept)}["android"])
    assert text.startswith("android: failed, 2 artifacts: 1 fail, 1 failed")   # the verdicts are this build's
    assert "the previous good build (1 artifact) stays in android/, this one is in .rejected/android/" in text


def test_charts_are_well_formed_svg():
    for chart in (svg.scatter([{"x": 1.5, "y": 0.9, "label": "a <b>"}, {"x": 30.0, "y": 0.99, "label": "c"}],
                              "size", "mAP", log_x=True, title="t"),
                  svg.scatter([], "x", "y"),
                  svg.bars(["c1", "c2"], [("ref", [0.5, None]), ("art", [0.4, 0.2])], "AP", y_max=1.0)):
        ET.fromstring(chart)   # parses: escaped labels, closed elements


def test_error_histogram_counts_every_value_once():
    ref = __import__("numpy").array([0.0, 1.0, 2.0, 3.0, 1e4])
    hist = tensor_metrics(ref, ref + [0.0, 1e-5, 0.5, 50.0, 2e3])["abs_error_hist"]
    assert sum(hist["counts"]) == 5
    assert hist["counts"][0] == 1 and hist["counts"][-1] == 1   # exact, and >= 1e3


def test_overlay_marks_added_and_missed_boxes():
    reference = [[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]]
    artifact = [[0, 0, 10, 11, 0.85, 0], [40, 40, 50, 50, 0.7, 0], [20, 20, 30, 30, 0.8, 0]]   # wrong class
    found, matched = overlays.differences(reference, artifact)
    assert found == [True, False] and matched == [True, False, False]
    image = {"width": 64, "height": 64, "source": "a.jpg", "href": "data:image/jpeg;base64,AA=="}
    drawn = overlays.overlay(0, image, reference, artifact, ["cat", "dog"], "onnx int8")
    assert 'data-differ="3"' in drawn and drawn.count('<rect class="extra"') == 2 and drawn.count('<rect class="missed"') == 1


def test_report_renders_without_images_and_names_failures(tmp_path):
    (tmp_path / "web").mkdir()
    path = html.write(tmp_path, MANIFEST)
    text = path.read_text()
    assert 'id="web-onnx-fp32"' in text and 'id="android-tflite-fp16"' in text
    assert "converter exploded" in text and "/tmp/x/build.log" in text
    assert "not on this machine" in text          # the sample image is not there: said, not an error
    md = (tmp_path / "report.md").read_text()
    assert "android / tflite fp16: failed" in md and md.count("| web |") == 3


def test_checksums_cover_every_target_file_and_verify(tmp_path):
    (tmp_path / "web" / "sub").mkdir(parents=True)
    (tmp_path / "web" / "a.onnx").write_bytes(b"a")
    (tmp_path / "web" / "sub" / "b.bin").write_bytes(b"b")
    (tmp_path / "m-web-1.tar.gz").write_bytes(b"t")
    (tmp_path / ".work").mkdir()
    (tmp_path / ".work" / "x").write_bytes(b"x")
    checksums.write(tmp_path, {"model": "m", "targets": {"web": {}}})
    listed = [ln.split("  ")[1] for ln in (tmp_path / "SHA256SUMS").read_text().splitlines()]
    assert listed == ["m-web-1.tar.gz", "web/a.onnx", "web/sub/b.bin"]
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path).returncode == 0
    (tmp_path / "web" / "a.onnx").write_bytes(b"changed")
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path,
                          capture_output=True).returncode != 0


def _build_dir(root: Path, name: str, targets: list[str], model="m", sha="s1") -> Path:
    folder = root / name / model
    folder.mkdir(parents=True)
    artifacts = []
    for t in targets:
        (folder / t).mkdir()
        (folder / t / "m.onnx").write_bytes(t.encode())
        artifacts.append({**_entry(t, "onnx", "fp32", "pass"), "path": f"{t}/m.onnx", "files": [f"{t}/m.onnx"],
                          "sha256": hashlib.sha256(t.encode()).hexdigest()})
    (folder / "manifest.json").write_text(json.dumps({
        "model": model, "spec": "/nowhere/m.toml", "source": {"sha256": sha},
        "evaluation": {"images": 8, "labelled": True},
        "targets": {t: {"status": "built"} for t in targets}, "artifacts": artifacts, "build_seconds": 1.0}))
    return root / name


def _merge(dirs: list[Path], out: Path):
    return merge(check(dirs), out)


def test_merge_combines_targets_and_refuses_mismatches(tmp_path):
    a = _build_dir(tmp_path, "a", ["web"])
    b = _build_dir(tmp_path, "b", ["android"])
    dest, manifest = _merge([a, b], tmp_path / "out")
    assert list(manifest["targets"]) == ["web", "android"]
    assert (dest / "android" / "m.onnx").read_bytes() == b"android" and (dest / "report.html").is_file()
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest).returncode == 0
    with pytest.raises(UserError, match="target 'web' is in both"):
        _merge([a, _build_dir(tmp_path, "c", ["web"])], tmp_path / "out2")
    with pytest.raises(UserError, match="source model's sha256 differs"):
        _merge([a, _build_dir(tmp_path, "d", ["ios"], sha="other")], tmp_path / "out3")
    with pytest.raises(UserError, match="the model differs"):
        _merge([a, _build_dir(tmp_path, "e", ["ios"], model="n")], tmp_path / "out4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no manifest.json"):
        _merge([tmp_path / "empty"], tmp_path / "out5")
    # An artifact changed or deleted after its build is refused, not vouched for by SHA256SUMS.
    f = _build_dir(tmp_path, "f", ["ios"])
    (f / "m" / "ios" / "m.onnx").write_bytes(b"tampered")
    with pytest.raises(UserError, match=r"ios/m.onnx: changed since it was built and verified"):
        _merge([a, f], tmp_path / "out6")
    (f / "m" / "ios" / "m.onnx").unlink()
    with pytest.raises(UserError, match=r"ios/m.onnx: missing"):
        _merge([a, f], tmp_path / "out6")
    for out in ("out2", "out3", "out6"):
        assert not (tmp_path / out).exists()


def test_a_merge_whose_copy_fails_midway_changes_nothing(tmp_path):
    """Every copy is staged before anything is swapped in: a file that cannot be copied (a
    dangling symlink in the second build) leaves the output folder as it was."""
    a = _build_dir(tmp_path, "a", ["web"])
    b = _build_dir(tmp_path, "b", ["android"])
    (b / "m" / "android" / "labels.txt").symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(UserError, match=r"android/labels.txt: cannot be copied into the merged folder"):
        _merge([a, b], tmp_path / "out")
    assert not (tmp_path / "out" / "m").exists()          # made by this merge: removed again
    # Into an earlier merge's folder: its files stay, no staging copy is left beside them.
    dest, _ = _merge([a], tmp_path / "out")
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    with pytest.raises(UserError, match="cannot be copied"):
        _merge([dest.parent, b], tmp_path / "out")
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    (b / "m" / "android" / "labels.txt").unlink()
    dest, manifest = _merge([dest.parent, b], tmp_path / "out")
    assert list(manifest["targets"]) == ["web", "android"] and not list(dest.glob(".staging-*"))


def test_checksums_keep_the_verified_sha256_of_a_file_changed_since(tmp_path):
    """verify, bench and merge rewrite SHA256SUMS: an artifact file changed or deleted since it
    was verified must still fail `sha256sum -c`, not be re-blessed with its new hash."""
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.onnx").write_bytes(b"verified")
    manifest = {"model": "m", "targets": {"web": {}}, "artifacts": [
        {"target": "web", "status": "built", "path": "web/a.onnx", "files": ["web/a.onnx"],
         "sha256": hashlib.sha256(b"verified").hexdigest()}]}
    (tmp_path / "web" / "a.onnx").write_bytes(b"tampered")
    checksums.write(tmp_path, manifest)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode != 0 and "web/a.onnx: FAILED" in check.stdout
    (tmp_path / "web" / "a.onnx").unlink()
    checksums.write(tmp_path, manifest)
    assert "web/a.onnx" in (tmp_path / "SHA256SUMS").read_text()


def test_latency_is_shown_in_the_row_of_the_runtime_that_was_benched():
    entry = {**_entry("web", "onnx", "fp32", "pass", ("onnxruntime", "ort-web-node")),
             "bench": {"runtime": "onnxruntime", "latency_ms_median": 4.25}}
    rows = [r for r in html.markdown({**MANIFEST, "artifacts": [entry]}).splitlines() if r.startswith("| web |")]
    assert [r.split(" | ")[2] for r in rows] == ["onnxruntime", "ort-web-node"]
    assert [r.split(" | ")[4] for r in rows] == ["4.25", "-"]


def test_a_merged_failure_names_the_log_that_came_with_its_job(tmp_path):
    a = _build_dir(tmp_path, "a", ["web"])
    b = _build_dir(tmp_path, "b", ["android"])
    manifest = json.loads((b / "m" / "manifest.json").read_text())
    gone = "/home/runner/work/x/dist-android/m/.work/logs/android-tflite_fp16-build.ab12cd.log"
    manifest["artifacts"].append({"target": "android", "backend": "tflite", "precision": "fp16", "status": "failed",
                                  "error": f"tflite:build: converter exploded (log: {gone})"})
    (b / "m" / "manifest.json").write_text(json.dumps(manifest))
    (b / "m" / ".work" / "logs").mkdir(parents=True)
    (b / "m" / ".work" / "logs" / Path(gone).name).write_text("the converter's own words\n")
    dest, merged = _merge([a, b], tmp_path / "out")
    error = next(e["error"] for e in merged["artifacts"] if e["status"] == "failed")
    copy = dest / ".work" / "logs" / Path(gone).name
    assert f"(log: {copy.resolve()})" in error and copy.read_text() == "the converter's own words\n"
    assert str(copy.resolve()) in (dest / "report.html").read_text()
