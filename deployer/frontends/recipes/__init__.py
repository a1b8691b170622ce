"""Source recipes: how to lower a model family whose own forward() is not what should be
deployed (torchvision detectors run Python post-processing after their graph). A recipe
builds the deployable part and tells the head what the graph leaves out (anchors, box coder).
Each module declares `RECIPE`; `source.recipe` in a spec names one."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from deployer.registry import discover


@dataclass(frozen=True)
class Recipe:
    name: str
    # make(factory, spec) -> the family's model from the spec's factory, before its weights load
    make: str                   # "module:function", imported in the torch worker only
    # build(model, spec) -> (nn.Module to lower and run as the reference, the head fields it
    # knows (JSON-able), the anchors array that lower() writes beside the ONNX file: empty
    # (0, 4) when the graph needs none, e.g. a two-stage detector lowered end to end)
    build: str
    # the head types its outputs feed; which one a given model takes is build()'s to check
    # (torchvision: one-stage models the anchors head, two-stage ones end2end)
    heads: tuple[str, ...]
    exporter: str = "auto"      # the torch ONNX exporter used when the spec leaves source.exporter at auto
    summary: str = ""


@cache
def registry() -> dict[str, Recipe]:
    return {r.name: r for r in discover(__name__, __path__, "RECIPE", lambda r: r.name)}
