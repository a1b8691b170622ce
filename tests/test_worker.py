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


def test_pool_reuses_a_warm_worker_per_family(tmp_path):
    from deployer.worker import WorkerPool

    pool = WorkerPool(2, tmp_path)
    try:
        a = pool.run("fam-a", "tests.stages.crashing:pid", {}, "a1", 60).value["pid"]
        assert pool.run("fam-a", "tests.stages.crashing:pid", {}, "a2", 60).value["pid"] == a
        assert pool.run("fam-b", "tests.stages.crashing:pid", {}, "b1", 60).value["pid"] != a
        assert pool.run("fam-a", "tests.stages.crashing:add", {"a": 1, "b": 2}, "add", 60).value == {"sum": 3}
    finally:
        pool.close()


def test_pool_crash_fails_only_the_stage_it_held(tmp_path):
    from deployer.worker import WorkerPool

    pool = WorkerPool(1, tmp_path)
    try:
        first = pool.run("fam", "tests.stages.crashing:pid", {}, "before", 60).value["pid"]
        with pytest.raises(StageError, match=r"crash: worker \(fam\) killed by signal SIGSEGV"):
            pool.run("fam", "tests.stages.crashing:segfault", {}, "crash", 60)
        with pytest.raises(StageError, match="RuntimeError: converter exploded"):
            pool.run("fam", "tests.stages.crashing:raise_error", {}, "err", 60)
        # A failed stage keeps its worker; a crashed one is replaced for the next stage.
        after = pool.run("fam", "tests.stages.crashing:pid", {}, "after", 60).value["pid"]
        assert after != first
        with pytest.raises(StageError, match="timed out after 1 s"):
            pool.run("fam", "tests.stages.crashing:hang", {}, "hang", 1)
        assert pool.run("fam", "tests.stages.crashing:add", {"a": 2, "b": 2}, "add", 60).value == {"sum": 4}
        with pytest.raises(UserError, match="not found"):
            pool.run("fam", "deployer.ir.onnx_ir:load_checked", {"path": str(tmp_path / "missing.onnx")}, "load", 60)
    finally:
        pool.close()
    assert all(not w.alive for w in pool.all)


def test_pool_stage_output_goes_to_its_own_log(tmp_path):
    from deployer.worker import WorkerPool

    pool = WorkerPool(1, tmp_path)
    try:
        result = pool.run("fam", "tests.stages.crashing:chatter", {}, "talk", 60)
    finally:
        pool.close()
    log = open(result.log).read()
    assert "python says hello" in log and "C says hello" in log
