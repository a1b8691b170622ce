"""Manifest merging: what a new build of some targets does to the entries of the others."""

from __future__ import annotations

from deployer.report.manifest import merge_manifest


def _entry(target, precision="fp32", status="built", path=None):
    return {"target": target, "backend": "onnx", "precision": precision, "status": status,
            "path": path or f"{target}/m_{precision}.onnx"}


OLD = {"model": "m", "build_seconds": 1.0,
       "targets": {"web": {"status": "built"}, "android": {"status": "built"}},
       "artifacts": [_entry("web"), _entry("web", "int8"), _entry("android")]}


def test_rebuilt_target_replaces_its_entries_and_keeps_the_others():
    new_web = [_entry("web", "fp16")]
    merged = merge_manifest(OLD, {"model": "m", "build_seconds": 2.0},
                            {"web": (new_web, {"status": "built", "kept_previous_build": False})})
    assert merged["build_seconds"] == 2.0
    assert [(a["target"], a["precision"]) for a in merged["artifacts"]] == [("android", "fp32"), ("web", "fp16")]
    assert merged["targets"]["android"] == {"status": "built"}
    assert merged["targets"]["web"]["status"] == "built"


def test_failed_rebuild_marks_the_previous_good_entries_superseded():
    rejected = [_entry("web", "fp32", path=".rejected/web/m_fp32.onnx")]
    merged = merge_manifest(OLD, {"model": "m"}, {"web": (rejected, {"status": "failed", "kept_previous_build": True})})
    web = [a for a in merged["artifacts"] if a["target"] == "web"]
    kept = [a for a in web if a.get("superseded_by_failed_build")]
    assert [a["precision"] for a in kept] == ["fp32", "int8"]
    assert [a["path"] for a in web if not a.get("superseded_by_failed_build")] == [".rejected/web/m_fp32.onnx"]
    assert merged["targets"]["web"]["status"] == "failed"


def test_failed_first_build_keeps_nothing_old():
    merged = merge_manifest(OLD, {"model": "m"}, {"ios": ([_entry("ios", status="failed")],
                                                         {"status": "failed", "kept_previous_build": False})})
    assert not any(a.get("superseded_by_failed_build") for a in merged["artifacts"])
    assert {a["target"] for a in merged["artifacts"]} == {"web", "android", "ios"}


def test_failed_rebuild_without_a_previous_folder_drops_old_entries():
    merged = merge_manifest(OLD, {"model": "m"}, {"web": ([], {"status": "failed", "kept_previous_build": False})})
    assert [a["target"] for a in merged["artifacts"]] == ["android"]


def test_no_previous_manifest():
    merged = merge_manifest(None, {"model": "m"}, {"web": ([_entry("web")], {"status": "built",
                                                                             "kept_previous_build": False})})
    assert merged["artifacts"] == [_entry("web")] and set(merged["targets"]) == {"web"}
