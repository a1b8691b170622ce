"""`deployer data synth`: write the synthetic shapes dataset in COCO, VOC and/or YOLO layout."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from deployer.datasets.base import Dataset, Item, write_dataset
from deployer.datasets.synth import CLASSES, generate


def write(out: Path, count: int, seed: int, fmt: str) -> dict[str, Path]:
    formats = ("coco", "voc", "yolo") if fmt == "all" else (fmt,)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        items = []
        for sample in generate(count, seed):
            path = Path(tmp) / sample.file_name
            sample.image.save(path, quality=92)
            items.append(Item(path, sample.boxes, sample.labels, sample.image.size))
        dataset = Dataset(list(CLASSES), items, labelled=True, source=f"synth(seed={seed})", format="synth")
        written = {}
        for f in formats:
            dst = out / f if len(formats) > 1 else out
            staging = Path(tempfile.mkdtemp(prefix=f".{f}-", dir=out))
            write_dataset(dataset, staging, f)
            if dst == out:  # single format: the layout goes straight into `out`
                for child in staging.iterdir():
                    target = out / child.name
                    if target.is_dir():
                        shutil.rmtree(target)
                    child.replace(target)
                staging.rmdir()
            else:
                if dst.exists():
                    shutil.rmtree(dst)
                staging.replace(dst)
            written[f] = dst
    return written
