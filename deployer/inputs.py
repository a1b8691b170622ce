"""Evaluation and calibration inputs: dataset images through the model's preprocessing, once.

Inputs are saved as .npz (one array per model input, shape (n, *input_shape)) so that every
runtime in every worker sees the very same tensors.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deployer.datasets.base import Dataset, open_dataset
from deployer.datasets.preprocess import prepare
from deployer.errors import UserError
from deployer.parity.compare import EvalSet
from deployer.parity.detection import Detections
from deployer.spec import ModelSpec


def load_dataset(path: str, spec: ModelSpec, role: str) -> Dataset:
    if not path:
        raise UserError(f"{spec.path}: field 'data.{role}': no {role} images; set it in the spec "
                        f"or pass --{'calib' if role == 'calibration' else 'eval'} DATASET")
    return open_dataset(path)


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
    for w in caught:
        warnings.warn(str(w.message), stacklevel=2)
    if not tensors:
        raise UserError(f"{dataset.source}: no decodable images")
    np.savez(out, **{inp.name: np.stack(tensors)})
    return EvalSet(ground_truth=truth if mapping is not None else None, images=len(tensors),
                   skipped=len(dataset.skipped), paths=paths)
