"""What decides the exit status: failed builds and verdicts, and unverified artifacts unless
allowed; and the raw-head default that keeps INT8 artifacts of raw heads judged."""

from __future__ import annotations

from deployer.pipeline import exit_status, unverified
from deployer.spec import ArtifactPlan, Head, InputSpec
from deployer.verification import thresholds_for


def _manifest(*verdicts, verify="required"):
    entries = []
    for i, v in enumerate(verdicts):
        entry = {"target": "t", "backend": "onnx", "precision": f"p{i}", "status": "built", "parity": {"verdict": v}}
        if verify != "required":
            entry["verify"] = verify
        entries.append(entry)
    return {"artifacts": entries}


def test_pass_and_warn_exit_0_fail_exits_1():
    assert exit_status(_manifest("pass", "warn"), ["t"]) == 0
    assert exit_status(_manifest("pass", "fail"), ["t"]) == 1


def test_unverified_counts_as_not_passed_unless_allowed():
    manifest = _manifest("pass", "unverified")
    assert exit_status(manifest, ["t"]) == 1
    assert [a["precision"] for a in unverified(manifest, ["t"])] == ["p1"]
    assert exit_status(manifest, ["t"], allow_unverified=True) == 0


def test_optional_verification_in_the_profile_does_not_fail_the_build():
    manifest = _manifest("pass", "unverified", verify="optional")
    assert unverified(manifest, ["t"]) == []
    assert exit_status(manifest, ["t"]) == 0


def test_failed_build_and_empty_target_exit_1():
    assert exit_status({"artifacts": [{"target": "t", "status": "failed"}]}, ["t"]) == 1
    assert exit_status(_manifest("pass"), ["other"]) == 1


class _Spec:
    def __init__(self, head_type):
        self.head = Head(type=head_type, params={"boxes": "b", "scores": "s", "box_format": "xyxy"}
                         if head_type == "boxes_scores" else {})
        self.inputs = [InputSpec("x", [1, 3, 8, 8], "NCHW")]


def test_raw_head_int8_gets_a_tensor_threshold():
    plan = ArtifactPlan("onnx", "int8", ["onnxruntime"], thresholds={"min_agreement_map50": 0.9})
    assert thresholds_for(plan, _Spec("raw")) == {"min_agreement_map50": 0.9, "min_snr_db": 15.0}
    # A detection head keeps the profile's thresholds; so does a raw head with its own tensor threshold.
    assert thresholds_for(plan, _Spec("boxes_scores")) == {"min_agreement_map50": 0.9}
    own = ArtifactPlan("onnx", "int8", ["onnxruntime"], thresholds={"min_cosine": 0.99})
    assert thresholds_for(own, _Spec("raw")) == {"min_cosine": 0.99}


def test_profile_verify_field_is_checked(tmp_path):
    import pytest

    from deployer.errors import UserError
    from deployer.spec import load_target_profile

    path = tmp_path / "p.toml"
    path.write_text('name = "p"\n[[artifacts]]\nbackend = "coreml"\nprecision = "fp16"\nverify = "optional"\n')
    assert load_target_profile(path).artifacts[0].verify == "optional"
    path.write_text('name = "p"\n[[artifacts]]\nbackend = "coreml"\nprecision = "fp16"\nverify = "maybe"\n')
    with pytest.raises(UserError, match="artifacts.*verify"):
        load_target_profile(path)


def test_graph_nms_int8_takes_its_defaults_unless_the_profile_sets_its_own(tmp_path):
    from deployer.spec import GRAPH_NMS_THRESHOLDS, load_target_profile

    spec = _Spec("end2end")
    spec.head.params = {"graph_nms": True}
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\n[[artifacts]]\nbackend = "onnx"\nprecision = "int8"\n')
    assert thresholds_for(load_target_profile(path).artifacts[0], spec) == GRAPH_NMS_THRESHOLDS["int8"]
    path.write_text('name = "p"\n[[artifacts]]\nbackend = "onnx"\nprecision = "int8"\n'
                    'thresholds = { min_agreement_map50_95 = 0.95, min_cosine = 0.9 }\n')
    # The profile's own detection thresholds replace the defaults; tensor ones have nothing to compare.
    assert thresholds_for(load_target_profile(path).artifacts[0], spec) == {"min_agreement_map50_95": 0.95}


def test_bench_with_nothing_built_is_an_error_not_an_empty_table(tmp_path):
    import json

    from tests.conftest import ROOT, run_cli

    model = tmp_path / "dist" / "shapes"
    (model / ".work").mkdir(parents=True)
    (model / ".work" / "eval_inputs.npz").write_bytes(b"")
    manifest = {"model": "shapes", "spec": str(ROOT / "examples" / "shapes" / "shapes.toml"),
                "targets": {"android": {"status": "failed", "profile": str(ROOT / "targets" / "android.toml")}},
                "artifacts": [{"target": "android", "backend": "tflite", "precision": "fp32", "status": "built",
                               "path": ".rejected/android/shapes_fp32.tflite", "files": [], "sha256": "0" * 64,
                               "parity": {}}]}
    (model / "manifest.json").write_text(json.dumps(manifest))
    ran = run_cli("bench", str(model))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "no built artifact to bench" in ran.stderr and "android" in ran.stderr and "Traceback" not in ran.stderr
