"""What a head type is: how a detector's outputs become detections (docs/ARCHITECTURE.md,
"Adding a head"). One module per type declares `HEAD`; parity, the demo page check and the
report decode through it, so a new output layout is one module."""

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
    # decode(outputs {name: (n, ...)}, head, score_threshold) -> [Detections] per image, in
    # network-input pixels; None for heads without detections (tensor parity only)
    decode: Callable | None = None
    summary: str = ""

    @property
    def detects(self) -> bool:
        return self.decode is not None
