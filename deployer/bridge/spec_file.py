"""A model spec written as TOML for a converted model, so that `deployer build` takes it as a
source: the same preprocessing, head, labels, outputs and data as the spec it came from; its
own source and inputs (a converted model may take channels-last inputs)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from deployer.errors import StageError
from deployer.spec import ModelSpec, Source

HEADER = ("# Written by deployer: the model beside this file, converted from {origin} and verified "
          "against it.\n# Build it like any spec: deployer build {file} --target ...\n")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf") if not math.isnan(v) else "nan"
    if isinstance(v, str):
        return json.dumps(v)   # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(name: str, values: dict, array: bool = False) -> str:
    head = f"[[{name}]]" if array else f"[{name}]"
    lines = [head] + [f"{k} = {_value(v)}" for k, v in values.items() if v not in (None, "", [])]
    return "\n".join(lines) + "\n"


def write(spec: ModelSpec, name: str, source: dict, inputs: list[dict], out_dir: str | Path, stem: str) -> list[str]:
    """Write `<stem>.toml` in `out_dir`, with copies of the files the head reads (a recipe's
    anchors, which live in the build's cache) beside it as `<stem>_<field><suffix>`, so the
    folder is self-contained: it can be moved, and the cache cleared. The names written."""
    from deployer.heads import registry as heads

    out_dir = Path(out_dir)
    head = dict(spec.to_dict()["head"])
    # The opset the source was lowered at is the converted model's too, where the spec chose one.
    if spec.source.opset != Source.opset and "opset" not in source:
        source = {**source, "opset": spec.source.opset}
    written = []
    for key in heads()[spec.head.type].paths:
        if not head.get(key):
            continue
        src = Path(head[key])
        if not src.is_file():
            raise StageError(f"head.{key}: {src} is gone, the converted model's spec cannot name it")
        copy = f"{stem}_{key}{src.suffix}"
        shutil.copyfile(src, out_dir / copy)
        head[key], written = copy, written + [copy]
    (out_dir / f"{stem}.toml").write_text(text(spec, name, source, inputs, f"{stem}.toml", head))
    return [f"{stem}.toml", *written]


def text(spec: ModelSpec, name: str, source: dict, inputs: list[dict], file_name: str, head: dict | None = None) -> str:
    """The TOML of the converted model's spec; `source`, `inputs` (and `head`, when its files
    were copied) are its own."""
    d = spec.to_dict()
    d["head"] = head or d["head"]
    parts = [HEADER.format(origin=spec.path or spec.name, file=file_name),
             f"name = {_value(name)}\nversion = {_value(spec.version)}\nlabels = {_value(spec.labels)}\n",
             _table("source", source),
             *(_table("inputs", i, array=True) for i in inputs),
             _table("outputs", {"names": spec.outputs}),
             _table("preprocess", d["preprocess"]),
             _table("head", {k: v for k, v in d["head"].items() if not isinstance(v, dict)}),
             _table("data", {k: v for k, v in d["data"].items()})]
    return "\n".join(parts)
