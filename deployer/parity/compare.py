"""Parity of one artifact's outputs against the reference outputs on the same inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deployer.heads import registry as heads
from deployer.parity.detection import EVAL_SCORE_THRESHOLD, Detections, mean_average_precision
from deployer.parity.tensor import tensor_metrics
from deployer.parity.verdict import judge
from deployer.spec import ModelSpec


@dataclass
class EvalSet:
    """The evaluation inputs' labels, in network-input pixel coordinates (None when unlabelled)."""

    ground_truth: list[Detections] | None
    images: int
    skipped: int = 0
    paths: list[str] = field(default_factory=list)  # the image behind each input, in order
    reference_labelled: dict | None = None  # the reference's labelled mAP, computed once


def decode_all(outputs: dict[str, np.ndarray], spec: ModelSpec, score_threshold: float) -> list[Detections]:
    """Detections per image (network-input pixels) through the spec's head type."""
    return heads()[spec.head.type].decode(outputs, spec.head, score_threshold)


def detects(spec: ModelSpec) -> bool:
    """Whether the spec's head gives detections (detection parity, the demo page)."""
    return heads()[spec.head.type].detects


def detection_metrics(reference: dict, outputs: dict, spec: ModelSpec, evalset: EvalSet) -> dict | None:
    """Agreement mAP (artifact scored against the reference's confident detections) and labelled mAP."""
    if not detects(spec):
        return None
    ref_dets = decode_all(reference, spec, EVAL_SCORE_THRESHOLD)
    out_dets = decode_all(outputs, spec, EVAL_SCORE_THRESHOLD)
    # The reference's deployed detections (above the head's threshold) are the ground truth.
    pseudo_gt = [d.above(spec.head.score_threshold) for d in ref_dets]
    agreement = mean_average_precision(out_dets, pseudo_gt)
    result = {"agreement_map50": agreement["map50"], "agreement_map50_95": agreement["map50_95"],
              "reference_detections": int(sum(len(d.scores) for d in pseudo_gt))}
    if evalset.ground_truth is not None:
        labelled = mean_average_precision(out_dets, evalset.ground_truth)
        if evalset.reference_labelled is None:
            evalset.reference_labelled = mean_average_precision(ref_dets, evalset.ground_truth)
        ref_labelled = evalset.reference_labelled
        result.update({"map50": labelled["map50"], "map50_95": labelled["map50_95"],
                       "reference_map50": ref_labelled["map50"], "reference_map50_95": ref_labelled["map50_95"]})
    # JSON has no NaN: an undefined figure (no ground truth to score against) is null.
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}


def compare(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], spec: ModelSpec,
            evalset: EvalSet, thresholds: dict, warn_only: bool, runtime: str, settings: dict) -> dict:
    parity = {"runtime": runtime, "settings": settings, "images": evalset.images,
              "outputs": {name: tensor_metrics(reference[name], outputs[name]) for name in spec.outputs}}
    detection = detection_metrics(reference, outputs, spec, evalset)
    if detection is not None:
        parity["detection"] = detection
    parity["thresholds"] = dict(thresholds)
    parity["verdict"], parity["reasons"] = judge(parity, thresholds, warn_only)
    return parity
