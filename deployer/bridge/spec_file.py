"""A model spec written as TOML for a converted model, so that `deployer build` takes it as a
source: the same preprocessing, head, labels, outputs and data as the spec it came from; its
own source and inputs (a converted model may take channels-last inputs)."""

from __future__ import annotations

import json
import math

from deployer.spec import ModelSpec

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


def text(spec: ModelSpec, name: str, source: dict, inputs: list[dict], file_name: str) -> str:
    """The TOML of the converted model's spec; `source` and `inputs` are its own."""
    d = spec.to_dict()
    parts = [HEADER.format(origin=spec.path or spec.name, file=file_name),
             f"name = {_value(name)}\nversion = {_value(spec.version)}\nlabels = {_value(spec.labels)}\n",
             _table("source", source),
             *(_table("inputs", i, array=True) for i in inputs),
             _table("outputs", {"names": spec.outputs}),
             _table("preprocess", d["preprocess"]),
             _table("head", {k: v for k, v in d["head"].items() if not isinstance(v, dict)}),
             _table("data", {k: v for k, v in d["data"].items()})]
    return "\n".join(parts)
