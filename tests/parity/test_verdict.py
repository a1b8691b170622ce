"""Threshold judgement and the choice of the run a multi-runtime artifact is judged by."""

from __future__ import annotations

import math

import pytest

from deployer.parity.verdict import judge, worst_run

PARITY = {"outputs": {"a": {"cosine": 0.99, "snr_db": 20.0, "max_abs": 0.1},
                      "b": {"cosine": 0.9999, "snr_db": 40.0, "max_abs": 0.01}},
          "detection": {"agreement_map50": 0.95, "agreement_map50_95": 0.80, "reference_detections": 10,
                        "map50": 0.80, "reference_map50": 0.83}}


def test_tensor_thresholds_are_checked_per_output():
    assert judge(PARITY, {"min_cosine": 0.9}) == ("pass", [])
    verdict, reasons = judge(PARITY, {"min_cosine": 0.999})
    assert verdict == "fail" and reasons == ["a: cosine 0.99 (needs >= 0.999)"]
    verdict, reasons = judge(PARITY, {"max_abs": 0.05, "min_snr_db": 30})
    assert verdict == "fail" and len(reasons) == 2 and all(r.startswith("a:") for r in reasons)


def test_a_figure_and_the_limit_it_missed_never_print_alike():
    parity = {"outputs": {"a": {"cosine": 0.9999996}}}
    assert judge(parity, {"min_cosine": 0.9999999})[1] == ["a: cosine 0.9999996 (needs >= 0.9999999)"]
    assert judge(parity, {"min_cosine": 0.99999961})[1] == ["a: cosine 0.9999996 (needs >= 0.99999961)"]


def test_warn_only_turns_a_fail_into_a_warning():
    assert judge(PARITY, {"min_cosine": 0.999}, warn_only=True)[0] == "warn"
    assert judge(PARITY, {"min_cosine": 0.9}, warn_only=True)[0] == "pass"


def test_labelled_map_drop_is_in_points():
    verdict, reasons = judge(PARITY, {"max_map50_drop": 2.0})
    assert verdict == "fail" and reasons[0].startswith("labelled: map50_drop 3")
    assert judge(PARITY, {"max_map50_drop": 3.5})[0] == "pass"


def test_agreement_thresholds():
    assert judge(PARITY, {"min_agreement_map50": 0.9, "min_agreement_map50_95": 0.8})[0] == "pass"
    verdict, reasons = judge(PARITY, {"min_agreement_map50_95": 0.85})
    assert verdict == "fail" and "agreement_map50_95 0.8" in reasons[0]


def test_nothing_checkable_is_unverified_never_pass():
    nothing = {"outputs": {}, "detection": {"agreement_map50": math.nan, "reference_detections": 0}}
    verdict, reasons = judge(nothing, {"min_agreement_map50": 0.9, "max_map50_drop": 1.0})
    assert verdict == "unverified" and "no threshold could be checked" in reasons[0]


def test_undefined_figure_fails_its_threshold():
    parity = {"outputs": {}, "detection": {"agreement_map50": None, "reference_detections": 3}}
    verdict, reasons = judge(parity, {"min_agreement_map50": 0.9})
    assert verdict == "fail" and "n/a" in reasons[0]


def _run(runtime, verdict, cosine=None):
    run = {"runtime": runtime, "verdict": verdict}
    if cosine is not None:
        run["outputs"] = {"x": {"cosine": cosine}}
    return run


def test_worst_run_is_worst_verdict_then_lowest_cosine():
    runs = [_run("node", "pass", 0.9999), _run("chromium", "pass", 0.9990), _run("ort", "pass", 1.0)]
    assert worst_run(runs)["runtime"] == "chromium"
    runs.append(_run("crashed", "fail"))
    assert worst_run(runs)["runtime"] == "crashed"
    assert worst_run([_run("a", "warn", 0.5), _run("b", "unverified")])["runtime"] == "b"


def test_shortfall_measures_how_far_the_missed_checks_are():
    from deployer.parity.verdict import shortfall

    thresholds = {"min_agreement_map50": 0.9, "max_map50_drop": 1.0}
    run = {"detection": {"agreement_map50": 0.95, "map50": 0.68, "reference_map50": 0.70, "reference_detections": 9}}
    assert shortfall(run, thresholds) == pytest.approx(1.0)                 # 2 points dropped, 1 allowed
    better = {"detection": {**run["detection"], "map50": 0.695}}
    assert shortfall(better, thresholds) == 0.0                             # passes every check
    worse = {"detection": {**run["detection"], "agreement_map50": 0.81}}
    assert shortfall(worse, thresholds) == pytest.approx(1.0 + 0.09 / 1.0)
