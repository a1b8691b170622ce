"""Accuracy-aware fallback for INT8 artifacts that miss their thresholds, on backends whose
quantizer can keep named layers in float (`Backend.keeps_float`).

Runs in the parent: each round is a per-layer analysis stage and a rebuild (the same
`artifacts.build_and_verify` every artifact goes through).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

from deployer import backends
from deployer import stages as stage_names
from deployer.artifacts import build_and_verify
from deployer.parity.verdict import shortfall
from deployer.quantize.sensitivity import rank_for_fallback
from deployer.spec import ArtifactPlan, ModelSpec
from deployer.stages import attempt


def _round_summary(entry: dict, kept: list[str]) -> dict:
    parity = entry.get("parity", {})
    det = parity.get("detection") or {}
    outs = parity.get("outputs", {}).values()
    return {"kept_float": list(kept), "verdict": parity.get("verdict", "fail"),
            "min_cosine": min((o["cosine"] for o in outs), default=None),
            "min_snr_db": min((o["snr_db"] for o in outs), default=None),
            **{k: det.get(k) for k in ("agreement_map50", "agreement_map50_95", "map50")}}


# An output whose cosine or SNR falls this low carries no signal any more: collapsed.
COLLAPSED_COSINE, COLLAPSED_SNR_DB = 0.5, 1.0


def collapsed(entry: dict) -> bool:
    outs = entry.get("parity", {}).get("outputs", {}).values()
    return any(o["cosine"] < COLLAPSED_COSINE or o["snr_db"] < COLLAPSED_SNR_DB for o in outs)


def round_rank(entry: dict) -> tuple:
    """Order of preference among fallback rounds: passing first, then fewer misses, then figures."""
    parity = entry["parity"]
    det = parity.get("detection") or {}
    snr = min((o["snr_db"] for o in parity.get("outputs", {}).values()), default=-math.inf)
    return (parity["verdict"] != "fail", -len(parity.get("reasons", [])),
            -shortfall(parity, parity.get("thresholds", {})),
            det.get("agreement_map50") or 0.0, det.get("agreement_map50_95") or 0.0, snr)


# Rounds in a row without progress before the fallback gives up. One is not enough: the first
# group kept in float (often the first convolutions, whose own SQNR drop is largest) may not
# be where the detection figures are lost, and the next, twice as large, group often is
# (measured: the Keras example's .pt2 on 32 calibration and 24 evaluation images, OpenVINO
# INT8 0.843 -> 0.841 -> 0.846 -> 0.973 agreement mAP@0.5:0.95 over three rounds).
STALE_ROUNDS = 2


def stalled(shortfalls: list[float], patience: int = STALE_ROUNDS) -> bool:
    """Whether the last `patience` rounds all failed to beat the best shortfall before them
    (`shortfalls[0]` is the artifact's own, then one per round)."""
    if len(shortfalls) <= patience:
        return False
    best = min(shortfalls[:-patience])
    return all(s >= best for s in shortfalls[-patience:])


def fallback(prep, spec: ModelSpec, target: str, plan: ArtifactPlan, staging: Path, entry: dict,
             after: int = 0) -> dict:
    """Accuracy-aware fallback: keep the most damaging layers in float until the verdict passes.

    Each round ranks layers by their own SQNR drop (quantize/sensitivity.py) on calibration
    images, keeps the next group of them in float (twice as many as the round before) and
    rebuilds in a folder of its own; a collapsed output sends the head's decoding first. It
    stops at the profile's `fallback_rounds`, or when `STALE_ROUNDS` rounds in a row do not
    bring the checks it first missed closer to their thresholds (`stalled`). The best round
    (passing, else closest) is the artifact; the manifest lists every round.
    """
    rounds, per_round = plan.options["fallback_rounds"], plan.options["fallback_layers"]
    kept: list[str] = list(plan.options["exclude"])
    history = [_round_summary(entry, kept)]
    candidates = [(entry, staging)]
    steps = list(entry.get("stages", []))
    current = entry, staging
    # Progress is judged on the checks the artifact first missed: a check it passed that a
    # round misses by noise (one detection more or less on a small evaluation set moves
    # labelled mAP a point) must not end the search; round_rank still prefers fewer misses.
    thresholds = entry["parity"].get("thresholds", {})
    missed = {k: v for k, v in thresholds.items() if shortfall(entry["parity"], {k: v}) > 0} or thresholds
    shortfalls = [shortfall(entry["parity"], missed)]
    for r in range(rounds):
        start = time.perf_counter()
        analysed, error = attempt(lambda: layer_rows(prep, spec, plan, target, current[0],
                                                     current[1] / Path(current[0]["path"]).name,
                                                     -(after + len(plan.runtimes) + 2)))
        if error:
            entry.setdefault("notes", []).append(f"fallback stopped: per-layer analysis failed: {error}")
            break
        rows, reused = analysed
        steps.append({"step": f"layer analysis {r + 1}", "seconds": round(time.perf_counter() - start, 2),
                      "reused": reused})
        groups = rank_for_fallback(rows.value, kept, collapsed(current[0]))[:per_round * 2 ** r]
        if not groups:
            break
        kept = kept + [n for g in groups for n in g if n not in kept]
        folder = staging / f".fallback-{plan.key}-{r + 1}"   # artifacts of a target fall back at once
        folder.mkdir()
        candidate = build_and_verify(prep, spec, target, plan, folder, {**plan.options, "exclude": kept}, after)
        if candidate["status"] != "built":
            entry.setdefault("notes", []).append(f"fallback round {r + 1} failed to build: {candidate['error']}")
            break
        history.append(_round_summary(candidate, kept))
        steps += [{**st, "step": f"{st['step']} (round {r + 1})"} for st in candidate.get("stages", [])]
        candidates.append((candidate, folder))
        if candidate["parity"]["verdict"] != "fail":
            break
        shortfalls.append(shortfall(candidate["parity"], missed))
        if stalled(shortfalls):
            entry.setdefault("notes", []).append(
                f"fallback stopped after round {r + 1}: keeping more layers in float did not bring the missed "
                f"checks closer to their thresholds in {STALE_ROUNDS} rounds in a row")
            break
        # The next round is ranked on the newest artifact: the layers it keeps in float are
        # out of the ranking, the others measured with them in float.
        current = candidate, folder
    best, folder = max(candidates, key=lambda c: round_rank(c[0]))
    if folder != staging:
        for f in best["files"]:
            os.replace(folder / Path(f).name, staging / Path(f).name)
    for _, f in candidates[1:]:
        shutil.rmtree(f, ignore_errors=True)
    chosen = history[candidates.index((best, folder))]
    best.setdefault("quantization", {})["fallback"] = {"rounds": history, "kept_float": chosen["kept_float"],
                                                       "chosen_round": candidates.index((best, folder))}
    best["stages"] = steps
    return best


def layer_rows(prep, spec: ModelSpec, plan: ArtifactPlan, target: str, entry: dict, artifact: Path,
               priority: float = 0.0):
    """Per-layer SQNR of a built INT8 artifact against the float graph on the calibration
    images (a worker stage, cached by the artifact's sha256): (cache entry, reused)."""
    backend = backends.get(plan.backend)
    key = prep.cache.key("layers", plan.backend, entry["sha256"], prep.keys["onnx"], prep.keys["calib"])
    return prep.cache.cached("layers", key, lambda folder: prep.stages.run(
        stage_names.LAYER_ERRORS, (target, plan.key, "layer analysis"), backend.family_for(spec.source.kind),
        priority, float_onnx=str(prep.onnx_path), spec=spec.to_dict(), backend=plan.backend, artifact=str(artifact),
        inputs=str(prep.calib_inputs)).value)
