"""A plain folder of images: no labels (calibration data, or parity by agreement only)."""

from __future__ import annotations

from pathlib import Path

from deployer.datasets.base import Dataset, Item, list_images


def read(path: Path) -> Dataset:
    return Dataset([], [Item(p) for p in list_images(path)], labelled=False, source=str(path), format="folder")
