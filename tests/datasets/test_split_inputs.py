"""Which split of a dataset with splits a build calibrates and evaluates on (inputs.load_dataset)."""

from __future__ import annotations

import pytest

from deployer import cli
from deployer.errors import UserError
from deployer.inputs import load_dataset, with_split
from deployer.spec import load_model_spec
from tests.conftest import run_cli, write_spec
from tests.datasets.builders import image, ultralytics


def _spec(tmp_path, data: str):
    return load_model_spec(write_spec(tmp_path, extra=f"[data]\n{data}\n"))


def _names(dataset) -> list[str]:
    return [i.image_path.name for i in dataset.items]


def test_calibration_reads_train_and_evaluation_reads_val(tmp_path):
    yaml_file = ultralytics(tmp_path / "ds") / "data.yaml"
    spec = _spec(tmp_path, f'calibration = "{yaml_file}"\nevaluation = "{yaml_file.parent}"')
    assert (spec.data.calibration_split, spec.data.evaluation_split) == ("", "")
    calib = load_dataset(spec.data.calibration, spec, "calibration")
    assert calib.split == "train" and _names(calib) == ["a.jpg", "b.png"]
    evaluation = load_dataset(spec.data.evaluation, spec, "evaluation")
    assert evaluation.split == "val" and _names(evaluation) == ["c.jpg"]


def test_split_fields_choose_another_split(tmp_path):
    yaml_file = ultralytics(tmp_path / "ds") / "data.yaml"
    spec = _spec(tmp_path, f'calibration = "{yaml_file}"\ncalibration_split = "val"\nevaluation = "{yaml_file}"\n'
                           'evaluation_split = "train"')
    assert _names(load_dataset(spec.data.calibration, spec, "calibration")) == ["c.jpg"]
    assert _names(load_dataset(spec.data.evaluation, spec, "evaluation")) == ["a.jpg", "b.png"]


def test_with_split_overrides_the_spec_and_applies_to_command_line_datasets(tmp_path):
    yaml_file = ultralytics(tmp_path / "ds") / "data.yaml"
    image(tmp_path / "plain/x.jpg", 16, 16)
    spec = _spec(tmp_path, f'calibration = "{tmp_path / "plain"}"\nevaluation = "{yaml_file}"\n'
                           'evaluation_split = "train"')
    spec = with_split(spec, "val")
    assert (spec.data.calibration_split, spec.data.evaluation_split) == ("val", "val")
    assert _names(load_dataset(spec.data.evaluation, spec, "evaluation")) == ["c.jpg"]
    assert _names(load_dataset(spec.data.calibration, spec, "calibration")) == ["x.jpg"]  # no splits: as is
    other = ultralytics(tmp_path / "other")
    assert _names(load_dataset(str(other), spec, "calibration")) == ["c.jpg"]
    with pytest.raises(UserError, match=r"the calibration dataset has no 'test' split \(it has: train, val\)"):
        load_dataset(str(other), with_split(spec, "test"), "calibration")


def test_with_split_needs_a_dataset_with_splits(tmp_path):
    image(tmp_path / "plain/x.jpg", 16, 16)
    spec = _spec(tmp_path, f'calibration = "{tmp_path / "plain"}"\nevaluation = "{tmp_path / "plain"}"')
    with pytest.raises(UserError, match="--split val: neither the calibration nor the evaluation dataset has splits"):
        with_split(spec, "val")
    result = run_cli("build", str(spec.path), "--split", "val", "--target", "web", "--out", str(tmp_path / "dist"))
    assert result.returncode == 2 and "--split val: neither" in result.stderr
    assert not (tmp_path / "dist").exists()


class _Stop(Exception):
    pass


def test_build_split_val_uses_the_val_images(tmp_path, monkeypatch):
    from deployer import pipeline

    calib_root, eval_root = ultralytics(tmp_path / "calib"), ultralytics(tmp_path / "eval")
    spec_path = write_spec(tmp_path)
    used = {}

    def fake_build(spec, profiles, opts, calibration="", evaluation="", on_target_done=None):
        # What prepare() does first: open the calibration and evaluation datasets.
        used["calibration"] = load_dataset(calibration or spec.data.calibration, spec, "calibration")
        used["evaluation"] = load_dataset(evaluation or spec.data.evaluation, spec, "evaluation")
        raise _Stop

    monkeypatch.setattr(pipeline, "build", fake_build)
    with pytest.raises(_Stop):
        cli.main(["build", str(spec_path), "--target", "web", "--out", str(tmp_path / "dist"),
                  "--calib", str(calib_root / "data.yaml"), "--eval", str(eval_root), "--split", "val"])
    assert used["calibration"].split == used["evaluation"].split == "val"
    assert _names(used["calibration"]) == _names(used["evaluation"]) == ["c.jpg"]
    with pytest.raises(_Stop):  # without --split: train to calibrate, val to evaluate
        cli.main(["build", str(spec_path), "--target", "web", "--out", str(tmp_path / "dist"),
                  "--calib", str(calib_root), "--eval", str(eval_root)])
    assert (used["calibration"].split, used["evaluation"].split) == ("train", "val")


def test_an_empty_evaluation_split_is_a_user_error(tmp_path):
    root = ultralytics(tmp_path / "ds")
    for f in (root / "images/val").iterdir():
        f.unlink()
    spec = _spec(tmp_path, f'calibration = "{root}"')
    with pytest.raises(UserError, match=r"data.yaml: split 'val' \(images/val\) has no images"):
        load_dataset(str(root), spec, "evaluation")
