"""An MTCNN-style face detector (raw outputs, per-channel PReLU after a fully connected
layer) through TFLite fp32, fp16 and full-integer int8: the full-integer model is one XNNPACK refuses to
prepare, so LiteRT's builtin kernels run it and the run says so; the raw head's INT8 is
judged by SNR (never unverified)."""

from __future__ import annotations

import json

from tests.conftest import ROOT, detector_spec, run_cli


def test_rnet_android_runs_where_xnnpack_refuses(tmp_path):
    source = f'kind = "torch"\nfactory = "tests.backends.torch_detectors:mtcnn_rnet"\npython_path = ["{ROOT}"]'
    spec = detector_spec(tmp_path, "rnet", source=source, shape=[1, 3, 24, 24], outputs=["boxes", "scores"],
                         head='type = "raw"', preprocess='resize = "stretch"\nscale = 127.5\nmean = [1.0, 1.0, 1.0]',
                         calibration_images=16, evaluation_images=16)
    profile = tmp_path / "full_integer.toml"
    profile.write_text('name = "android"\n' + "".join(
        f'[[artifacts]]\nbackend = "tflite"\nprecision = "{p}"\n' for p in ("fp32", "fp16"))
        + '[[artifacts]]\nbackend = "tflite"\nprecision = "int8"\noptions = { io = "int8" }\n')
    ran = run_cli("build", str(spec), "--target", str(profile), "--out", str(tmp_path / "dist"))
    manifest = json.loads((tmp_path / "dist" / "rnet" / "manifest.json").read_text())
    runs = {a["precision"]: a["parity"] for a in manifest["artifacts"]}
    assert runs["fp32"]["verdict"] == runs["fp16"]["verdict"] == "pass"
    int8 = runs["int8"]
    assert int8["settings"]["delegate"].startswith("builtin kernels (XNNPACK failed to prepare")
    # Measured and judged by the raw head's default SNR threshold, whatever the verdict.
    assert int8["thresholds"]["min_snr_db"] == 15.0 and "snr_db" in int8["outputs"]["boxes"]
    assert int8["verdict"] in ("pass", "fail") and ran.returncode == (0 if int8["verdict"] == "pass" else 1)
