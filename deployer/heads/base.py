"""What a head type is: how a detector's outputs become detections (docs/ARCHITECTURE.md,
"Adding a head"). One module per type declares `HEAD`; parity, the demo page check and the
report decode through it, so a new output layout is one module (plus its JavaScript twin in
deployer/runtimes/js/heads.mjs, keyed by the same name, for the demo page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from deployer.options import Option


@dataclass(frozen=True)
class HeadType:
    name: str
    fields: tuple[Option, ...]     # its own fields of the spec's [head] table
    # validate(params, outputs, labels) -> None, or (dotted field, expected, got) naming what is wrong
    validate: Callable[[dict, list[str], list[str]], tuple | None] | None = None
    # decode(outputs {name: (n, ...)}, spec, score_threshold) -> [Detections] per image, in
    # network-input pixels; None for heads without detections (tensor parity only)
    decode: Callable | None = None
    # complete(params, output_shapes {name: shape}, labels, lowered) -> params: checks the
    # fields against the lowered model's output shapes and fills what is inferred from them
    # or written by the frontend (lowered["head"], e.g. a recipe's anchors); raises UserError
    complete: Callable[[dict, dict, list[str], dict], dict] | None = None
    # fields that are file paths, resolved against the spec's folder and hashed into the cache keys
    paths: tuple[str, ...] = ()
    # page_data(params) -> extra JSON the demo page's decoder needs (e.g. the anchors themselves)
    page_data: Callable[[dict], dict] | None = None
    # graph(g, params, spec) -> (boxes, scores): the decoding as ONNX nodes, for artifacts with
    # NMS in the graph (ir/nms.py): `g` (ir/nms.Graph) adds nodes and constants; boxes come out
    # (1, N, 4) xyxy in input pixels, scores (1, N, labels). The same arithmetic as `decode`.
    graph: Callable | None = None
    summary: str = ""

    @property
    def detects(self) -> bool:
        return self.decode is not None


def output_check(params: dict, outputs: list[str], labels: list[str], *keys: str) -> tuple | None:
    """The common validation: named outputs exist and a detection head has labels."""
    for key in keys:
        if params.get(key) and params[key] not in outputs:
            return f"head.{key}", f"one of the outputs {outputs}", params[key]
    if not labels:
        return "labels", "class names for a detection head", labels
    return None
