"""Evaluation and calibration inputs: dataset images through the model's preprocessing, once.

Inputs are saved as .npz (one array per model input, shape (n, *input_shape)) so that every
runtime in every worker sees the very same tensors.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from deployer.datasets.base import SPLITS_FROM, Dataset, SkippedImage, dataset_splits, open_dataset, splits_optional
from deployer.datasets.preprocess import prepare
from deployer.errors import UserError
from deployer.parity.compare import EvalSet
from deployer.parity.detection import Detections
from deployer.spec import DEFAULT_DATA_SPLITS, ModelSpec


def load_dataset(path: str, spec: ModelSpec, role: str) -> Dataset:
    if not path:
        raise UserError(f"{spec.path}: field 'data.{role}': no {role} images; set it in the spec "
                        f"or pass --{'calib' if role == 'calibration' else 'eval'} DATASET")
    return open_dataset(path, split=_split(path, spec, role))


def _split(path: str, spec: ModelSpec, role: str) -> str | None:
    splits = dataset_splits(path)
    if not splits:
        return None  # a split asked by --split does not concern a dataset without splits
    split = getattr(spec.data, f"{role}_split") or DEFAULT_DATA_SPLITS[role]
    if split not in splits and not getattr(spec.data, f"{role}_split") and splits_optional(path):
        return None   # a VOC folder without that list: read whole
    if split not in splits:
        raise UserError(f"{path}: the {role} dataset has no '{split}' split (it has: {', '.join(splits)}); "
                        f"choose one with --split or the spec's data.{role}_split")
    return split


def with_split(spec: ModelSpec, split: str, calibration: str = "", evaluation: str = "") -> ModelSpec:
    """`spec` reading `split` of its calibration and evaluation datasets (`build --split`)."""
    datasets = [calibration or spec.data.calibration, evaluation or spec.data.evaluation]
    if not any(p and dataset_splits(p) for p in datasets):
        raise UserError(f"--split {split}: neither the calibration nor the evaluation dataset has splits "
                        f"({', '.join(p or '(none)' for p in datasets)}); {SPLITS_FROM}")
    data = dataclasses.replace(spec.data, calibration_split=split, evaluation_split=split)
    return dataclasses.replace(spec, data=data)


def _class_map(dataset: Dataset, spec: ModelSpec) -> dict[int, int]:
    """Dataset class index -> model class index, by name."""
    unknown = [c for c in dataset.classes if c not in spec.labels]
    if unknown:
        raise UserError(f"{dataset.source}: classes {unknown} are not among the model's labels {spec.labels}")
    return {i: spec.labels.index(c) for i, c in enumerate(dataset.classes)}


def prepare_inputs(dataset: Dataset, spec: ModelSpec, count: int, out: Path, with_labels: bool) -> EvalSet:
    """Preprocess up to `count` images into `out` (.npz); return their labels in network coordinates."""
    if len(spec.inputs) != 1:
        raise UserError(f"{spec.path}: image datasets feed single-input models; this one has {len(spec.inputs)}")
    inp = spec.inputs[0]
    mapping = _class_map(dataset, spec) if (with_labels and dataset.labelled) else None
    tensors, truth, paths = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for item, image in dataset.images(limit=count):
            x, transform = prepare(image, inp, spec.preprocess)
            tensors.append(x)
            paths.append(str(item.image_path))
            if mapping is not None:
                labels = np.array([mapping[int(c)] for c in item.labels], np.int64)
                truth.append(Detections(transform.to_network(item.boxes), np.ones(len(labels), np.float32), labels))
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedImage)]
    others = [str(w.message) for w in caught if not issubclass(w.category, SkippedImage)]
    if skipped:   # one line for them all, naming the first
        warnings.warn(f"{dataset.name}: {len(skipped)} of {len(skipped) + len(tensors)} images could not be read or decoded "
                      f"and were skipped (first: {skipped[0]})", stacklevel=2)
    for message in dict.fromkeys(others):
        warnings.warn(message, stacklevel=2)
    if not tensors:
        raise UserError(f"{dataset.name}: none of its {len(dataset.items)} images can be decoded; "
                        "expected readable image files")
    np.savez(out, **{inp.name: np.stack(tensors)})
    return EvalSet(ground_truth=truth if mapping is not None else None, images=len(tensors),
                   skipped=len(dataset.skipped), paths=paths)
