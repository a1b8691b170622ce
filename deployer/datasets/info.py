"""`deployer data info`: what a dataset holds, per split for a dataset that has splits."""

from __future__ import annotations

import collections
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from deployer.datasets.base import Dataset, dataset_splits, open_dataset
from deployer.errors import UserError


def _decoded_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _summary(dataset: Dataset, sizes: dict[Path, tuple[int, int] | None]) -> dict:
    """Counts over the decodable images; `sizes` is shared so an image in two splits is decoded once."""
    per_class: collections.Counter = collections.Counter()
    decoded, skipped = [], []
    for item in dataset.items:
        if item.image_path not in sizes:
            sizes[item.image_path] = _decoded_size(item.image_path)
        size = sizes[item.image_path]
        if size is None:
            skipped.append(str(item.image_path))
            continue
        decoded.append(size)
        per_class.update(dataset.classes[int(label)] for label in item.labels)
    if not decoded:
        raise UserError(f"{dataset.name}: none of its {len(dataset.items)} images can be decoded "
                        f"(first: {skipped[0]}); expected readable image files")
    widths, heights = [s[0] for s in decoded], [s[1] for s in decoded]
    return {"images": len(decoded), "skipped": len(skipped), "skipped_files": skipped,
            "boxes": int(sum(per_class.values())), "left_out": dataset.left_out,
            "boxes_per_class": {c: per_class.get(c, 0) for c in dataset.classes},
            "image_sizes": {"min_width": min(widths), "max_width": max(widths), "min_height": min(heights),
                            "max_height": max(heights), "distinct": len(set(decoded))}}


def describe(src: str, fmt: str | None = None, split: str | None = None) -> dict:
    """The whole dataset (or the one `split`); with splits, also each split under 'splits'."""
    sizes: dict[Path, tuple[int, int] | None] = {}
    dataset = open_dataset(src, fmt, split)
    info = {"source": str(src), "format": dataset.format, "classes": dataset.classes, **_summary(dataset, sizes)}
    splits = [] if split else dataset_splits(src, dataset.format)
    if split:
        info["split"] = split
    if splits:
        info["splits"] = {s: _summary(open_dataset(src, fmt, s), sizes) for s in splits}
    return info
