"""`deployer data info`: what a dataset holds."""

from __future__ import annotations

import collections
import warnings

from deployer.datasets.base import open_dataset


def describe(src: str, fmt: str | None = None) -> dict:
    dataset = open_dataset(src, fmt)
    per_class: collections.Counter = collections.Counter()
    sizes = []
    images = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped images are counted below
        for item, image in dataset.images():
            images += 1
            sizes.append(image.size)
            for label in item.labels:
                per_class[dataset.classes[int(label)]] += 1
    widths, heights = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"source": str(src), "format": dataset.format, "images": images, "skipped": len(dataset.skipped),
            "skipped_files": dataset.skipped, "classes": dataset.classes,
            "boxes": int(sum(per_class.values())),
            "boxes_per_class": {c: per_class.get(c, 0) for c in dataset.classes},
            "image_sizes": {"min_width": min(widths), "max_width": max(widths), "min_height": min(heights),
                            "max_height": max(heights), "distinct": len(set(sizes))} if sizes else {}}
