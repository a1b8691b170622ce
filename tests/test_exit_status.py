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
