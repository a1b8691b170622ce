"""Ultralytics' data.yaml: class names and the train/val/test splits, resolved as Ultralytics does.

A split is a folder of images (searched recursively), a .txt file listing image paths, or a
list of those, relative to `path` (itself relative to the yaml's folder). Labels follow the
Ultralytics rule (`label_path`). Nothing here imports numpy: the spec reader asks `splits()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from deployer.errors import UserError

SPLITS = ("train", "val", "test")
YAML_NAMES = ("data.yaml", "data.yml")


@dataclass
class DataYaml:
    file: Path
    root: Path                       # the resolved `path`: split entries are relative to it
    names: list[str] | None          # None when the yaml gives neither `names` nor `nc`
    splits: dict[str, list[str]] = field(default_factory=dict)   # split -> its entries as written
    pose: bool = False               # `kpt_shape` given: label lines are a box followed by keypoints


def find_yaml(path: Path) -> Path | None:
    """The data.yaml of a dataset given as the yaml itself or as its folder."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    if path.is_dir():
        return next((path / n for n in YAML_NAMES if (path / n).is_file()), None)
    return None


def splits(path: str | Path) -> list[str]:
    """The splits a dataset declares ([] for any dataset without a data.yaml naming them)."""
    yaml_file = find_yaml(Path(path))
    return list(load(yaml_file).splits) if yaml_file else []


def load(yaml_file: Path) -> DataYaml:
    import yaml

    try:
        doc = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{yaml_file}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{yaml_file}: not UTF-8 text; expected a data.yaml with 'names' and "
                        "'train'/'val' folders") from None
    doc = doc if doc is not None else {}
    if not isinstance(doc, dict):
        raise UserError(f"{yaml_file}: expected a mapping with 'names' and 'train'/'val' folders, "
                        f"got {type(doc).__name__}")
    entries = {s: _entries(yaml_file, s, doc.get(s)) for s in SPLITS}
    entries = {s: e for s, e in entries.items() if e}
    return DataYaml(yaml_file, _root(yaml_file, doc.get("path"), entries), _names(yaml_file, doc), entries,
                    pose=doc.get("kpt_shape") is not None)


def _entries(yaml_file: Path, split: str, value) -> list[str]:
    if value is None or value == "" or value == []:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise UserError(f"{yaml_file}: field '{split}': expected a folder of images, a .txt file listing "
                        f"image paths, or a list of those, got {value!r}")
    return values


def _entry_path(root: Path, entry: str) -> Path:
    path = (root / entry).resolve()
    # Ultralytics' own rule: yolov5-era yamls (Roboflow exports) write '../train/images' for a
    # folder beside the yaml.
    if not path.exists() and entry.startswith("../"):
        path = (root / entry[3:]).resolve()
    return path


def _root(yaml_file: Path, path, entries: dict[str, list[str]]) -> Path:
    here = yaml_file.parent.resolve()
    if path is None or path == "":
        return here
    if not isinstance(path, str):
        raise UserError(f"{yaml_file}: field 'path': expected a folder, got {path!r}")
    root = (here / path).resolve()
    if root.is_dir():
        return root
    # Ultralytics resolves a relative 'path' from its own datasets folder, so a data.yaml kept
    # with its dataset often names a folder that is not there; the splits beside it are meant.
    if not Path(path).is_absolute() and any(_entry_path(here, e).exists() for es in entries.values() for e in es):
        return here
    raise UserError(f"{yaml_file}: field 'path': folder not found: {root} (a relative 'path' is taken "
                    "from the yaml's folder; remove it when the splits are beside data.yaml)")


def _names(yaml_file: Path, doc: dict) -> list[str] | None:
    names, nc = doc.get("names"), doc.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 0):
        raise UserError(f"{yaml_file}: field 'nc': expected the number of classes, got {nc!r}")
    if names is None:
        return None if nc is None else [f"class_{i}" for i in range(nc)]   # Ultralytics' own default
    if isinstance(names, dict):
        # Label files hold indices: a gap in the keys would shift every class after it.
        by_index = {int(k): v for k, v in names.items() if str(k).isdigit()}
        if sorted(by_index) != list(range(len(names))):
            raise UserError(f"{yaml_file}: field 'names': a mapping needs the class indices 0..{len(names) - 1} "
                            f"as keys, got {list(names)}")
        names = [by_index[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise UserError(f"{yaml_file}: field 'names': expected a list or a mapping of class names, got {names!r}")
    if nc is not None and nc != len(names):
        raise UserError(f"{yaml_file}: field 'nc' is {nc} but 'names' has {len(names)} classes")
    return [str(n) for n in names]


def split_images(data: DataYaml, split: str) -> list[Path]:
    """The images of one split, in order; a split without images is an error."""
    if split not in data.splits:
        raise UserError(f"{data.file}: no split '{split}' (it has: {', '.join(data.splits) or 'none'})")
    images: list[Path] = []
    for entry in data.splits[split]:
        path = _entry_path(data.root, entry)
        if path.is_dir():
            images += find_images(path)
        elif path.is_file() and path.suffix.lower() == ".txt":
            images += _listed(path)
        else:
            raise UserError(f"{data.file}: field '{split}': {entry!r} is not a folder of images or a .txt list "
                            f"of image paths (looked for {path})")
    if not images:
        raise UserError(f"{data.file}: split '{split}' ({', '.join(data.splits[split])}) has no images; expected "
                        f"image files in that folder, or their paths in that .txt file")
    return images


def find_images(folder: Path) -> list[Path]:
    from deployer.datasets.base import IMAGE_SUFFIXES  # base imports numpy: keep splits() light

    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _listed(txt: Path) -> list[Path]:
    from deployer.datasets.base import IMAGE_SUFFIXES

    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{txt}: not UTF-8 text; expected one image path per line") from None
    # Relative lines are taken from the list's folder (Ultralytics does so for './' lines).
    paths = ((txt.parent / line.strip()).resolve() for line in lines if line.strip())
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last '/images/' of the image path becomes '/labels/', suffix '.txt'."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if images in text:
        text = labels.join(text.rsplit(images, 1))
    return Path(text).with_suffix(".txt")
