"""What a backend is: one declaration per backend module (docs/ARCHITECTURE.md, "Adding a backend").

Everything else (profile validation, the build, the INT8 fallback, per-layer reports,
`deployer inspect`, the web demo page) asks the registry in `deployer/backends/__init__.py`
for these facts instead of keeping its own list of backend names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deployer.options import Option


@dataclass(frozen=True)
class Backend:
    name: str
    build: str                         # worker stage 'module:function' (signature in backends/__init__.py)
    format: str                        # artifact format, matched against what each runtime accepts
    precisions: tuple[str, ...]
    runtimes: tuple[str, ...]          # the runtimes an artifact is verified in unless the profile says
    options: tuple[Option, ...] | None = ()   # None: not declared (custom backends), passed through as given
    # The framework its stages import: stages of one family share a warm worker process.
    # "{source}" stands for the source kind (CoreML converts the source model itself).
    family: str = ""
    # A stage whose product every artifact of this backend (or another declaring the same
    # stage) builds from, made once per build: one onnx2tf conversion for every TFLite file
    # and the TF.js SavedModel. prebuild(onnx_path, spec, options, calibration, out_dir) -> dict;
    # `prebuild_options` are what it reads of an artifact's options (defaults where absent).
    prebuild: str | None = None
    prebuild_options: tuple[Option, ...] = ()
    # What its family's worker imports while it waits for its first stage (module names, or
    # 'module:function' to call): a build warms its workers up while the model is lowered.
    preload: tuple[str, ...] = ()
    layer_outputs: str | None = None   # stage running the artifact with its tensors under their ONNX names
    keeps_float: bool = False          # its INT8 quantizer can keep named ONNX nodes in float (fallback)
    web_engine: str | None = None      # the JavaScript engine that runs it on the demo page
    op_support: str | None = None      # 'module:function(onnx_path, ops) -> [unsupported]' for inspect
    graph_nms: bool = False            # builds artifacts with NMS in the graph ([head] nms = "graph")
    graph_nms_best_class: bool = False  # ... whose NMS keeps each box under its best class only (Vision's)
    summary: str = ""

    def family_for(self, source_kind: str) -> str:
        return self.family.format(source=source_kind)


CALIBRATION_IMAGES = Option("calibration_images", int, 64, "calibration images used (at most those prepared)",
                            minimum=1, precisions=("int8",))


QUANTIZE_HEAD = Option("quantize_head", bool, False, "quantize the head's decoding too (after the last layers: "
                       "sigmoid, softmax, box arithmetic, concatenation), which stays float by default",
                       precisions=("int8",))


def int8_options(fallback: bool) -> tuple[Option, ...]:
    """Options every INT8 backend takes; the fallback ones only where layers can stay float."""
    common = (CALIBRATION_IMAGES,)
    if not fallback:
        return common
    return common + (
        Option("exclude", list, [], "ONNX node names kept in float", precisions=("int8",)),
        Option("fallback_rounds", int, 3, "accuracy-aware fallback rounds when thresholds are missed",
               minimum=0, precisions=("int8",)),
        Option("fallback_layers", int, 2, "layers kept in float in the first fallback round (doubling after)",
               minimum=1, precisions=("int8",)),
        QUANTIZE_HEAD,
    )


def custom(reference: str) -> Backend:
    """A profile's 'package.module:function' backend: built by that function, options passed
    through unchecked (deployer cannot know them), runtimes named by the profile."""
    return Backend(name=reference, build=reference, format="custom", precisions=("fp32", "fp16", "int8", "dynamic"),
                   runtimes=(), options=None, family="", summary="custom backend")


# Beside a shared conversion's output: what the conversion rewrote so the converter could take
# the model ([{"kind", "note", ...}]); every artifact built from it carries the notes.
REPAIRS = "repairs.json"


def write_repairs(folder: str | Path, repairs: list[dict]) -> None:
    (Path(folder) / REPAIRS).write_text(json.dumps(repairs))


def repair_notes(prebuilt: str | Path) -> list[str]:
    path = Path(prebuilt) / REPAIRS
    return [r["note"] for r in json.loads(path.read_text())] if path.is_file() else []
