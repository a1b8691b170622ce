"""The worker runs stages in child processes and reports crashes, timeouts and errors."""

from __future__ import annotations

import pytest

from deployer.errors import StageError, UserError
from deployer.worker import run_stage


def test_stage_returns_json(tmp_path):
    result = run_stage("tests.stages.crashing:add", {"a": 2, "b": 3}, workdir=tmp_path, name="add")
    assert result.value == {"sum": 5}


def test_hard_crash_is_reported_with_signal(tmp_path):
    with pytest.raises(StageError, match="killed by signal SIGSEGV"):
        run_stage("tests.stages.crashing:segfault", {}, workdir=tmp_path, name="crash")


def test_timeout_kills_the_child(tmp_path):
    with pytest.raises(StageError, match="timed out after 2 s"):
        run_stage("tests.stages.crashing:hang", {}, workdir=tmp_path, name="hang", timeout=2)


def test_exception_is_reported_with_its_message(tmp_path):
    with pytest.raises(StageError, match="RuntimeError: converter exploded"):
        run_stage("tests.stages.crashing:raise_error", {}, workdir=tmp_path, name="err")


def test_user_error_crosses_the_process_boundary(tmp_path):
    with pytest.raises(UserError, match="not found"):
        run_stage("deployer.ir.onnx_ir:load_checked", {"path": str(tmp_path / "missing.onnx")},
                  workdir=tmp_path, name="load")
