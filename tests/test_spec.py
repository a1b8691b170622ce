"""Model specs and target profiles: valid files load, bad ones name the file and the field."""

from __future__ import annotations

import pytest

from deployer.errors import UserError
from deployer.spec import DEFAULT_THRESHOLDS, find_target, load_model_spec, load_target_profile
from tests.conftest import ROOT, run_cli, write_spec


def test_bundled_example_spec_loads():
    spec = load_model_spec(ROOT / "examples/shapes/shapes.toml")
    assert spec.name == "shapes"
    assert spec.inputs[0].shape == [1, 3, 192, 192] and spec.inputs[0].height == 192
    assert spec.head.type == "boxes_scores" and spec.labels == ["circle", "square", "triangle", "star"]
    assert spec.source.weights.endswith("shapes.pt")


def test_missing_field_names_file_and_field(tmp_path):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('name = "images"\n', ""))
    with pytest.raises(UserError) as err:
        load_model_spec(path)
    assert str(path) in str(err.value) and "inputs[0].name" in str(err.value)


def test_wrong_type_names_file_field_and_expected_form(tmp_path):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("shape = [1, 3, 64, 64]", 'shape = "1x3x64x64"'))
    with pytest.raises(UserError) as err:
        load_model_spec(path)
    message = str(err.value)
    assert str(path) in message and "inputs[0].shape" in message and "list of 4 positive integers" in message


@pytest.mark.parametrize("old,new,field", [
    ('layout = "NCHW"', 'layout = "CHW"', "inputs[0].layout"),
    ('type = "boxes_scores"', 'type = "boxes_scores"\nunknown_key = 1', "head.unknown_key"),
    ('boxes = "boxes"', 'boxes = "nope"', "head.boxes"),
    ('kind = "torch"', 'kind = "caffe"', "source.kind"),
])
def test_invalid_values_are_named(tmp_path, old, new, field):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(UserError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_model_spec(path)


def test_broken_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(UserError, match="not valid TOML"):
        load_model_spec(bad)
    with pytest.raises(UserError, match="not found"):
        load_model_spec(tmp_path / "absent.toml")


def test_missing_weights_file_is_named(tmp_path):
    path = write_spec(tmp_path, source='kind = "torch"\nfactory = "m:build"\nweights = "nothere.pt"')
    with pytest.raises(UserError, match="source.weights.*nothere.pt"):
        load_model_spec(path)


def test_bundled_profiles_load_with_default_thresholds():
    for name in ("web", "android", "embedded"):
        profile = load_target_profile(find_target(name, ROOT / "targets"))
        assert profile.artifacts
        for plan in profile.artifacts:
            for key, value in DEFAULT_THRESHOLDS[plan.precision].items():
                assert key in plan.thresholds and (plan.thresholds[key] == value or key == "max_map50_drop")


def test_profile_errors_name_field(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\n[[artifacts]]\nbackend = "tflite"\nprecision = "int4"\n')
    with pytest.raises(UserError, match=r"board.toml: field 'artifacts\[0\].precision'"):
        load_target_profile(path)
    path.write_text('name = "board"\n[[artifacts]]\nbackend = "tflite"\nprecision = "fp32"\n'
                    '[artifacts.thresholds]\nmin_cosine = "high"\n')
    with pytest.raises(UserError, match=r"artifacts\[0\].thresholds.min_cosine"):
        load_target_profile(path)


def test_profile_threshold_override(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('[thresholds.fp32]\nmin_cosine = 0.999\n[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n')
    assert load_target_profile(path).artifacts[0].thresholds["min_cosine"] == 0.999


def test_unknown_target_lists_known(tmp_path):
    with pytest.raises(UserError, match="known targets: .*android"):
        find_target("toaster", ROOT / "targets")


def test_cli_bad_spec_exits_2_without_traceback(tmp_path):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('names = ["boxes", "scores"]', "names = 3"))
    result = run_cli("build", str(path), "--out", str(tmp_path / "dist"))
    assert result.returncode == 2
    assert "outputs.names" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()
