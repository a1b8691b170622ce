"""Parity of one artifact's outputs against the reference outputs on the same inputs.

Measuring (tensor metrics, decoding, mAP) runs in the worker that ran the artifact, against
a `Reference` made once per build: the reference outputs, their detections decoded once,
the ground truth and the reference's own labelled mAP, all in files. Judging (thresholds ->
verdict) runs in the parent, so a changed threshold re-judges cached measurements.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deployer.heads import registry as heads
from deployer.parity.detection import (
    EVAL_SCORE_THRESHOLD,
    Detections,
    load_detections,
    mean_average_precision,
    save_detections,
)
from deployer.parity.tensor import tensor_metrics
from deployer.parity.verdict import judge
from deployer.spec import Head, ModelSpec


@dataclass
class EvalSet:
    """The evaluation inputs' labels, in network-input pixel coordinates (None when unlabelled)."""

    ground_truth: list[Detections] | None
    images: int
    skipped: int = 0
    paths: list[str] = field(default_factory=list)  # the image behind each input, in order


def decode_all(outputs: dict[str, np.ndarray], spec: ModelSpec, score_threshold: float) -> list[Detections]:
    """Detections per image (network-input pixels) through the spec's head type."""
    return heads()[spec.head.type].decode(outputs, spec, score_threshold)


def detects(spec: ModelSpec) -> bool:
    """Whether the spec's head gives detections (detection parity, the demo page)."""
    return heads()[spec.head.type].detects


@dataclass
class Reference:
    """What every run is measured against; `files()` lets a worker load the same."""

    outputs: dict[str, np.ndarray]
    detections: list[Detections] | None        # decoded at the evaluation floor (EVAL_SCORE_THRESHOLD)
    truth: list[Detections] | None
    labelled: dict | None                     # the reference's own labelled mAP

    @classmethod
    def make(cls, outputs: dict, spec: ModelSpec, truth: list[Detections] | None) -> "Reference":
        dets = decode_all(outputs, spec, EVAL_SCORE_THRESHOLD) if detects(spec) else None
        labelled = mean_average_precision(dets, truth) if dets is not None and truth is not None else None
        return cls(outputs, dets, truth, labelled)

    def save(self, folder: Path) -> None:
        """Write the decoded parts beside `folder`/outputs.npz (see files_in)."""
        for name, dets in (("detections", self.detections), ("truth", self.truth)):
            if dets is not None:
                save_detections(folder / f"{name}.npz", dets)
        (folder / "labelled.json").write_text(json.dumps(self.labelled))

    @staticmethod
    def files_in(folder: Path) -> dict:
        """The paths a worker needs to load this reference (JSON-able)."""
        files = {"outputs": str(folder / "outputs.npz"), "labelled": json.loads((folder / "labelled.json").read_text())}
        for name in ("detections", "truth"):
            if (folder / f"{name}.npz").is_file():
                files[name] = str(folder / f"{name}.npz")
        return files

    @classmethod
    def load(cls, files: dict) -> "Reference":
        return cls(dict(np.load(files["outputs"])),
                   load_detections(files["detections"]) if "detections" in files else None,
                   load_detections(files["truth"]) if "truth" in files else None, files["labelled"])


# The first evaluation images' detections go into each run's figures, for the report's overlays.
REPORT_SAMPLES = 3


def sample_rows(detections: list[Detections], threshold: float) -> list[list[list[float]]]:
    """The first images' detections above `threshold`, per image [x1, y1, x2, y2, score, label]
    in network-input pixels, rounded (the report draws them; the manifest stays small)."""
    rows = []
    for d in detections[:REPORT_SAMPLES]:
        d = d.above(threshold)
        rows.append([[*(round(float(v), 1) for v in b), round(float(s), 3), int(c)]
                     for b, s, c in zip(d.boxes, d.scores, d.labels)])
    return rows


def _per_class(ours: dict, own: dict, labels: list[str]) -> dict:
    """AP per class of the artifact and of the reference, against the labels, by class name."""
    def name(c: str) -> str:
        return labels[int(c)] if int(c) < len(labels) else c
    return {name(c): {"ap50": v["ap50"], "ap50_95": v["ap50_95"],
                      "reference_ap50": own.get("per_class", {}).get(c, {}).get("ap50"),
                      "reference_ap50_95": own.get("per_class", {}).get(c, {}).get("ap50_95")}
            for c, v in ours.get("per_class", {}).items()}


def detection_metrics(outputs: dict, spec: ModelSpec, ref: Reference) -> dict | None:
    """Agreement mAP (artifact scored against the reference's confident detections) and labelled mAP."""
    if ref.detections is None:
        return None
    out_dets = decode_all(outputs, spec, EVAL_SCORE_THRESHOLD)
    reference = ref.detections
    if spec.head.params.get("best_class"):
        # The artifact's NMS puts each box under its best class only (CoreML's Vision NMS): the
        # source's outputs are decoded the same way, with its own head.
        source_head = Head.from_dict({**spec.head.params["source_head"], "best_class": True})
        if source_head.type == "end2end":   # finished detections: each box kept under its best label
            reference = [d.one_label_per_box() for d in reference]
        else:
            reference = decode_all(ref.outputs, dataclasses.replace(spec, head=source_head), EVAL_SCORE_THRESHOLD)
    # The reference's deployed detections (above the head's threshold) are the ground truth.
    pseudo_gt = [d.above(spec.head.score_threshold) for d in reference]
    agreement = mean_average_precision(out_dets, pseudo_gt)
    result = {"agreement_map50": agreement["map50"], "agreement_map50_95": agreement["map50_95"],
              "reference_detections": int(sum(len(d.scores) for d in pseudo_gt))}
    if ref.truth is not None:
        labelled = mean_average_precision(out_dets, ref.truth)
        own = ref.labelled
        floor = spec.head.params.get("score_floor", 0.0)
        if floor > EVAL_SCORE_THRESHOLD:
            # The artifact drops detections under its own NMS threshold: the reference is scored
            # down to the same floor, or the low-score tail it keeps would count as a drop.
            own = mean_average_precision([d.above(floor) for d in reference], ref.truth)
        result.update({"map50": labelled["map50"], "map50_95": labelled["map50_95"],
                       "reference_map50": own["map50"], "reference_map50_95": own["map50_95"],
                       "per_class": _per_class(labelled, own, spec.labels)})
    result["samples"] = sample_rows(out_dets, spec.head.score_threshold)
    # JSON has no NaN: an undefined figure (no ground truth to score against) is null.
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}


def measure(ref: Reference, outputs: dict[str, np.ndarray], spec: ModelSpec) -> dict:
    """Every figure of one run: per-output tensor metrics and, for detection heads, mAPs."""
    # Only outputs the source also has: an artifact with NMS in its graph has none of them.
    metrics = {"outputs": {name: tensor_metrics(ref.outputs[name], outputs[name]) for name in spec.outputs
                           if name in ref.outputs}}
    detection = detection_metrics(outputs, spec, ref)
    if detection is not None:
        metrics["detection"] = detection
    return metrics


def judged(metrics: dict, thresholds: dict, warn_only: bool, runtime: str, settings: dict, images: int) -> dict:
    """A run's parity record: its figures, the thresholds, the verdict and its reasons."""
    parity = {"runtime": runtime, "settings": settings, "images": images, **metrics, "thresholds": dict(thresholds)}
    parity["verdict"], parity["reasons"] = judge(parity, thresholds, warn_only)
    return parity
