"""Verdicts: compare measured parity against a profile's thresholds."""

from __future__ import annotations

import math

# threshold key -> (where the figure is, figure name, True when higher is better)
CHECKS = {
    "min_cosine": ("outputs", "cosine", True),
    "min_snr_db": ("outputs", "snr_db", True),
    "max_abs": ("outputs", "max_abs", False),
    "min_agreement_map50": ("detection", "agreement_map50", True),
    "min_agreement_map50_95": ("detection", "agreement_map50_95", True),
    "max_map50_drop": ("detection", "map50_drop", False),
    "max_map50_95_drop": ("detection", "map50_95_drop", False),
}
# Drops in points (0..100) of labelled mAP: threshold key -> the figure's name in the detection results.
DROPS = {"max_map50_drop": "map50", "max_map50_95_drop": "map50_95"}


def _figures(parity: dict, key: str) -> dict | None:
    """The figures a threshold applies to ({name: value}), or None where it does not apply."""
    where, figure, _ = CHECKS[key]
    det = parity.get("detection") or {}
    if where == "outputs":
        return {name: m[figure] for name, m in parity.get("outputs", {}).items()}
    if figure.startswith("agreement") and det.get("reference_detections") == 0:
        return None  # the reference found nothing to agree with: not checkable here
    if key in DROPS:   # a drop in points (0..100) of labelled mAP, where there are labels
        figure = DROPS[key]
        if det.get(figure) is None or det.get(f"reference_{figure}") is None:
            return None
        return {"labelled": 100.0 * (det[f"reference_{figure}"] - det[figure])}
    if figure in det:
        return {"detection": det[figure]}
    return None  # no detection head or no labels: this threshold does not apply


def shortfall(parity: dict, thresholds: dict) -> float:
    """How far a run's figures are from its thresholds, summed over the checks it misses, each
    relative to its limit (0 when every check passes): what the INT8 fallback must bring down."""
    total = 0.0
    for key, limit in thresholds.items():
        higher = CHECKS[key][2]
        for value in (_figures(parity, key) or {}).values():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                total += 1.0
                continue
            miss = (limit - value) if higher else (value - limit)
            total += max(0.0, miss) / max(abs(limit), 1.0)
    return total


def judge(parity: dict, thresholds: dict, warn_only: bool = False) -> tuple[str, list[str]]:
    """Return (verdict, reasons): pass, fail, warn when the profile tolerates failure, or
    unverified when none of the thresholds could be checked (e.g. no reference detections)."""
    reasons, checked = [], 0
    for key, limit in thresholds.items():
        _, figure, higher = CHECKS[key]
        values = _figures(parity, key)
        if values is None:
            continue
        checked += len(values)
        for name, value in values.items():
            bad = (value is None or (isinstance(value, float) and math.isnan(value))
                   or (value < limit if higher else value > limit))
            if bad:
                sign = ">=" if higher else "<="
                shown, needed = _fmt_pair(value, limit)
                reasons.append(f"{name}: {figure} {shown} (needs {sign} {needed})")
    if not reasons and not checked:
        return "unverified", ["no threshold could be checked (no reference detections above the head's "
                              "score threshold on the evaluation images, and no tensor threshold)"]
    if not reasons:
        return "pass", []
    return ("warn" if warn_only else "fail"), reasons


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _fmt_pair(value, limit) -> tuple[str, str]:
    """A figure and the limit it missed, with as many digits as it takes to tell them apart
    (0.9999996 against 0.9999999 must not read "1 (needs >= 1)")."""
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return _fmt(value), f"{limit:g}"
    for digits in range(6, 18):
        shown, needed = f"{value:.{digits}g}", f"{limit:.{digits}g}"
        if shown != needed:
            return shown, needed
    return shown, needed


ORDER = ("fail", "unverified", "warn", "pass")  # worst first


def min_cosine(parity: dict) -> float:
    """The lowest cosine over a run's outputs (-1 for a run without outputs: a crash)."""
    return min((o["cosine"] for o in parity.get("outputs", {}).values()), default=-1.0)


def worst_run(runs: list[dict]) -> dict:
    """The run a multi-runtime artifact is judged by: the worst verdict, then the lowest cosine."""
    return min(runs, key=lambda r: (ORDER.index(r["verdict"]), min_cosine(r)))

