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


# Where a bundled profile departs from the default thresholds, on purpose (see its comments).
PROFILE_OVERRIDES = {("ios", "coreml", "fp16"): {"min_cosine": 0.999}}


def test_bundled_profiles_load_with_default_thresholds():
    for name in ("web", "android", "embedded", "ios", "mcu"):
        profile = load_target_profile(find_target(name, ROOT / "targets"))
        assert profile.artifacts
        for plan in profile.artifacts:
            expected = {**DEFAULT_THRESHOLDS[plan.precision],
                        **PROFILE_OVERRIDES.get((name, plan.backend, plan.precision), {})}
            assert plan.thresholds == expected, (name, plan.key)


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


def _profile(tmp_path, body: str):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\n[[artifacts]]\n' + body)
    return path


@pytest.mark.parametrize("body,field,message", [
    ('backend = "onnx"\nprecision = "int8"\noptions = { calibraton_images = 8 }\n',
     "artifacts[0].options.calibraton_images",
     "unknown option for onnx int8 (known: calibration_images, exclude, fallback_rounds, fallback_layers, "
     "quantize_head, calibration_method)"),
    ('backend = "onnx"\nprecision = "fp32"\noptions = { calibration_images = 8 }\n',
     "artifacts[0].options.calibration_images", "applies to onnx int8 only, not fp32"),
    ('backend = "tflite"\nprecision = "int8"\noptions = { io = "uint8" }\n',
     "artifacts[0].options.io", "expected one of float, int8, got 'uint8'"),
    ('backend = "tflite"\nprecision = "int8"\noptions = { exclude = ["conv1"] }\n',
     "artifacts[0].options.exclude", "unknown option for tflite int8 (known: calibration_images, io, quantizer, quantize_head)"),
    ('backend = "onnx"\nprecision = "int8"\noptions = { calibration_images = 0 }\n',
     "artifacts[0].options.calibration_images", "an integer >= 1, got 0"),
    ('backend = "openvino"\nprecision = "fp32"\noptions = { runtime = { precision_hint = "f32" } }\n',
     "artifacts[0].options.runtime", "runtime settings have their own table"),
    ('backend = "openvino"\nprecision = "fp32"\nruntime_settings = { precison_hint = "f32" }\n',
     "artifacts[0].runtime_settings.precison_hint",
     "not a setting of runtime openvino (known: threads, precision_hint)"),
    ('backend = "openvino"\nprecision = "fp32"\nruntime_settings = { precision_hint = "f64" }\n',
     "artifacts[0].runtime_settings.precision_hint", "expected one of f32, bf16, f16"),
    ('backend = "onnx"\nprecision = "fp32"\nruntime = ["onnxruntime", "ort-web-node"]\n'
     'runtime_settings = { threads = 2 }\n',
     "artifacts[0].runtime_settings.threads", "not a setting of runtime ort-web-node"),
    ('backend = "openvino"\nprecision = "dynamic"\n', "artifacts[0].precision",
     "backend 'openvino' does not build 'dynamic' (it builds: fp32, fp16, int8)"),
    ('backend = "tensorrt"\nprecision = "int8"\n', "artifacts[0].backend", "one of coreml, onnx, openvino, tf, tfjs, tflite, tflm, torch"),
    ('backend = "tflm"\nprecision = "fp32"\n', "artifacts[0].precision", "int8"),
    ('backend = "onnx"\nprecision = "fp32"\nruntime = "litert"\n', "artifacts[0].runtime",
     "'litert' does not run onnx artifacts (onnx); runtimes that do: ort-web-node, ort-web-chromium, onnxruntime, "
     "openvino"),
    ('backend = "onnx"\nprecision = "fp32"\nruntime = "tvm"\n', "artifacts[0].runtime", "runtimes among"),
    ('backend = "onnx"\nprecision = "fp32"\nnms = "yes"\n', "artifacts[0].nms", "expected one of none, graph"),
    ('backend = "tflm"\nprecision = "int8"\noptions = { arena_headroom = nan }\n',
     "artifacts[0].options.arena_headroom", "a number >= 0 and <= 4, got nan"),
    ('backend = "tflm"\nprecision = "int8"\noptions = { arena_headroom = inf }\n',
     "artifacts[0].options.arena_headroom", "a number >= 0 and <= 4, got inf"),
    ('backend = "onnx"\nprecision = "fp32"\nthresholds = { min_cosine = nan }\n',
     "artifacts[0].thresholds.min_cosine", "a number, got nan"),
])
def test_profile_options_and_combinations_are_checked_on_load(tmp_path, body, field, message):
    path = _profile(tmp_path, body)
    with pytest.raises(UserError) as err:
        load_target_profile(path)
    text = str(err.value)
    assert text.startswith(f"{path}: field '{field}'") and message in text, text


def test_graph_nms_artifacts_get_their_own_name_and_detection_thresholds(tmp_path):
    from deployer.spec import GRAPH_NMS_THRESHOLDS
    from deployer.verification import thresholds_for

    profile = load_target_profile(_profile(tmp_path, 'backend = "onnx"\nprecision = "fp32"\nnms = "graph"\n'
                                                     '[[artifacts]]\nbackend = "onnx"\nprecision = "fp32"\n'))
    nms, plain = profile.artifacts
    assert (nms.key, plain.key) == ("onnx_fp32_nms", "onnx_fp32")
    spec = load_model_spec(write_spec(tmp_path))
    assert spec.head.nms == "none" and nms.nms_for(spec.head.nms) == "graph" and plain.nms_for("graph") == "graph"
    from deployer.graph_nms import derived_spec

    derived = derived_spec(spec)
    assert derived.head.type == "end2end" and derived.head.params["graph_nms"]
    assert thresholds_for(nms, derived) == GRAPH_NMS_THRESHOLDS["fp32"]
    assert thresholds_for(plain, spec) == DEFAULT_THRESHOLDS["fp32"]


def test_profile_options_get_their_defaults(tmp_path):
    plan = load_target_profile(_profile(tmp_path, 'backend = "onnx"\nprecision = "int8"\n'
                                                  'options = { calibration_method = "entropy" }\n')).artifacts[0]
    assert plan.options == {"calibration_images": 64, "exclude": [], "fallback_rounds": 3, "fallback_layers": 2,
                            "quantize_head": False, "calibration_method": "entropy"}
    plan = load_target_profile(_profile(tmp_path, 'backend = "openvino"\nprecision = "fp32"\n'
                                                  'runtime_settings = { threads = 1 }\n')).artifacts[0]
    assert plan.options == {} and plan.runtime_settings == {"threads": 1} and plan.runtimes == ["openvino"]


def test_custom_backend_options_pass_through(tmp_path):
    plan = load_target_profile(_profile(tmp_path, 'backend = "mypkg.npu:build"\nprecision = "int8"\n'
                                                  'runtime = "onnxruntime"\noptions = { cores = 4 }\n')).artifacts[0]
    assert plan.options == {"cores": 4}


def test_cli_misspelled_option_exits_2_before_any_work(tmp_path):
    spec = write_spec(tmp_path)
    path = _profile(tmp_path, 'backend = "onnx"\nprecision = "int8"\noptions = { calibraton_images = 8 }\n')
    result = run_cli("build", str(spec), "--target", str(path), "--out", str(tmp_path / "dist"))
    assert result.returncode == 2, result.stderr
    assert "board.toml: field 'artifacts[0].options.calibraton_images': unknown option" in result.stderr
    assert "calibration_images" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()


@pytest.mark.parametrize("old,new,message", [
    ('scores = "scores"', 'scores = "scores"\nbox_format = "xywh"', "head.box_format': expected one of xyxy, cxcywh"),
    ('scores = "scores"', 'scores = "scores"\nanchors = "a.npy"', "head.anchors': unknown field for head type "
                                                                  "'boxes_scores' (known: boxes, scores, box_format)"),
    ('scores = "scores"\n', "", "head.scores': missing (the name of the scores output"),
    ('type = "boxes_scores"', 'type = "boxes_scores"\nscore_threshold = 1.5', "head.score_threshold'"),
    ('type = "boxes_scores"', 'type = "yolo9000"', "head.type': expected one of anchors, boxes_scores, end2end, raw, yolo"),
    ('type = "boxes_scores"', 'type = "boxes_scores"\nnms = "model"', "head.nms': expected one of none, graph"),
    ('type = "boxes_scores"\nboxes = "boxes"\nscores = "scores"', 'type = "anchors"\ndeltas = "boxes"\nlogits = "scores"',
     "head.anchors': an anchors head needs the anchors: a .npy file"),
    ('type = "boxes_scores"\nboxes = "boxes"\nscores = "scores"', 'type = "raw"\nnms = "graph"',
     "head.nms': expected 'none': NMS in the graph needs a head whose decoding deployer can add to the graph "
     "(anchors, boxes_scores, end2end, yolo), not 'raw'"),
])
def test_head_fields_are_checked_by_the_head_type(tmp_path, old, new, message):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(UserError) as err:
        load_model_spec(path)
    assert message in str(err.value), str(err.value)


def _ultralytics_yaml(folder):
    from tests.datasets.builders import image, text

    image(folder / "images/train/a.jpg", 8, 8)
    image(folder / "images/val/b.jpg", 8, 8)
    return text(folder / "data.yaml", "train: images/train\nval: images/val\nnames: [a]\n")


def test_data_split_fields(tmp_path):
    yaml_file = _ultralytics_yaml(tmp_path / "ds")
    spec = load_model_spec(write_spec(tmp_path, extra='[data]\ncalibration = "ds/data.yaml"\nevaluation = "ds"\n'
                                                     'calibration_split = "val"'))
    assert spec.data.calibration == str(yaml_file) and spec.data.calibration_split == "val"
    assert spec.data.evaluation_split == ""  # its default: val
    assert spec.to_dict()["data"]["calibration_split"] == "val"


@pytest.mark.parametrize("data,message", [
    ('evaluation = "ds"\nevaluation_split = "test"', "field 'data.evaluation_split': expected one of the splits of "
                                                     ".*ds: train, val, got 'test'"),
    ('evaluation = "ds"\nevaluation_split = "valid"', "field 'data.evaluation_split': expected one of the splits of "
                                                      ".*ds: train, val, got 'valid'"),
    ('calibration = "plain"\ncalibration_split = "train"', "field 'data.calibration_split': expected no split: "
                                                           ".*plain has none"),
    ('evaluation = "ds"\nevaluation_splits = "val"', "unknown field 'data.evaluation_splits'"),
    ('calibration = "only_val"', "field 'data.calibration': expected a dataset with a 'train' split, or "
                                 "data.calibration_split naming one of its splits \\(val\\)"),
])
def test_data_split_fields_are_checked_against_the_dataset(tmp_path, data, message):
    from tests.datasets.builders import image, text

    _ultralytics_yaml(tmp_path / "ds")
    image(tmp_path / "plain/x.jpg", 8, 8)
    text(tmp_path / "only_val/data.yaml", "val: ../ds/images/val\nnames: [a]\n")
    with pytest.raises(UserError, match=f"tiny.toml: {message}"):
        load_model_spec(write_spec(tmp_path, extra=f"[data]\n{data}\n"))
