"""What a frontend is (docs/ARCHITECTURE.md, "Stages"): how a source kind is lowered to ONNX
and which runtime runs the source itself as the parity reference."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Frontend:
    kind: str                 # the spec's source.kind
    lower: str                # worker stage 'module:function(spec, out_path, source_sha256, toolchain) -> info'
    reference_runtime: str    # the runtime that runs the source model for the reference outputs
    summary: str = ""
