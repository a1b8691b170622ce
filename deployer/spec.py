"""Model specs and target profiles: TOML files, validated on load into dataclasses.

Every validation error names the file, the dotted field and the expected form, so a
user can fix the file without reading this code.
"""

from __future__ import annotations

import math

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import UserError
from deployer.options import read_options

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32",)
RESIZE_MODES = ("letterbox", "stretch")
CHANNEL_ORDERS = ("RGB", "BGR")
PRECISIONS = ("fp32", "fp16", "int8", "dynamic")

# Default verdict thresholds by precision (docs/ARCHITECTURE.md, "Parity"); a profile may override them.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"min_cosine": 0.99999},
    "fp16": {"min_cosine": 0.9995},
    "dynamic": {"min_cosine": 0.999},
    "int8": {"min_agreement_map50": 0.90, "min_agreement_map50_95": 0.90, "max_map50_drop": 1.0,
             "max_map50_95_drop": 1.0},
}
# The INT8 gate bounds localisation as well as recognition: agreement and labelled mAP at
# IoU 0.5:0.95, so a model that keeps its classes but moves its boxes (int8 box outputs in
# pixels) fails.
# A raw head (tensor parity only) has no detection thresholds: its int8 artifacts are judged
# by the outputs' signal-to-noise ratio instead (15 dB: an rms error under 18% of the signal),
# so they are never left unverified for want of a threshold.
RAW_HEAD_THRESHOLDS: dict[str, dict[str, float]] = {"int8": {"min_snr_db": 15.0}}
VERIFY_MODES = ("required", "optional")
NMS_MODES = ("none", "graph")   # where NMS runs: in deployer's decoder (and the app), or in the artifact
# An artifact with NMS in its graph outputs finished detections, which have no tensor to
# compare with the source's raw outputs: it is judged by detection agreement instead, by
# precision (agreement mAP@0.5:0.95 for float artifacts, the usual INT8 gate for int8 ones).
GRAPH_NMS_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"min_agreement_map50_95": 0.99},
    "fp16": {"min_agreement_map50_95": 0.97},
    "dynamic": {"min_agreement_map50_95": 0.95},
    # NMS in an int8 graph picks among overlapping candidates by int8 scores, so another box of
    # the same object may win: agreement at IoU 0.95 falls (0.89 on a YOLO layout whose
    # labelled mAP@0.5:0.95 rose by 0.3 points) while the labelled drops bound the damage.
    "int8": {**DEFAULT_THRESHOLDS["int8"], "min_agreement_map50_95": 0.85},
}
THRESHOLD_KEYS = ("min_cosine", "min_snr_db", "max_abs", "min_agreement_map50",
                  "min_agreement_map50_95", "max_map50_drop", "max_map50_95_drop")


class Reader:
    """Typed access to one TOML table, with errors that name file and field."""

    def __init__(self, path: Path, table: dict, prefix: str = ""):
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, expected: str, got: Any = None) -> UserError:
        where = f"{self.prefix}{key}" if key else self.prefix.rstrip(".")
        got_text = "" if got is None else f", got {got!r}"
        return UserError(f"{self.path}: field '{where}': expected {expected}{got_text}")

    def get(self, key: str, kind: type | tuple, expected: str, default: Any = ..., choices=None):
        if key not in self.table:
            if default is ...:
                raise UserError(f"{self.path}: missing field '{self.prefix}{key}' ({expected})")
            return default
        value = self.table[key]
        # TOML has no float/int distinction a user cares about: accept ints for floats.
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(key, expected, value)
        if isinstance(value, float) and math.isnan(value):    # TOML has nan; no field means it
            raise self.fail(key, expected, value)
        if choices is not None and value not in choices:
            raise self.fail(key, f"one of {', '.join(map(str, choices))}", value)
        return value

    def numbers(self, key: str, expected: str, length: int | None = None, default: Any = ...,
                kind: type = float) -> list:
        values = self.get(key, list, expected, default)
        if values is default and default is not ...:
            return values
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in values)
        if kind is int:
            ok = ok and all(isinstance(v, int) for v in values)
        if not ok or (length is not None and len(values) != length):
            raise self.fail(key, expected, values)
        return [kind(v) for v in values]

    def sub(self, key: str, default: Any = ...) -> "Reader":
        table = self.get(key, dict, "a table", default)
        return Reader(self.path, table, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list["Reader"]:
        """A required, non-empty array of tables, one reader per table (named key[i])."""
        items = self.get(key, list, f"an [[{key}]] array of tables")
        if not items:
            raise self.fail(key, f"at least one [[{key}]] table", items)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", "a table", item)
        return [Reader(self.path, item, f"{self.prefix}{key}[{i}].") for i, item in enumerate(items)]

    def unknown(self, key: str, text: str) -> UserError:
        return UserError(f"{self.path}: field '{self.prefix}{key}': {text}")

    def reject_unknown(self, known: set[str]) -> None:
        for key in self.table:
            if key not in known:
                raise UserError(f"{self.path}: unknown field '{self.prefix}{key}' "
                                f"(known: {', '.join(sorted(known))})")


def _read_toml(path: Path, what: str) -> dict:
    if path.is_dir():
        tomls = sorted(p.name for p in path.glob("*.toml"))
        raise UserError(f"{path}: a folder; give the {what} file itself"
                        + (f" (here: {', '.join(tomls[:5])})" if tomls else ""))
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None


# ----------------------------------------------------------------------------- model spec

@dataclass
class InputSpec:
    name: str
    shape: list[int]
    layout: str = "NCHW"
    dtype: str = "float32"

    @property
    def height(self) -> int:
        return self.shape[2] if self.layout == "NCHW" else self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[3] if self.layout == "NCHW" else self.shape[2]


@dataclass
class Preprocess:
    resize: str = "letterbox"
    pad_value: float = 114.0
    scale: float = 255.0           # raw 0..255 pixels are divided by this first
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    channel_order: str = "RGB"


@dataclass
class Head:
    """How outputs become detections: the type (deployer/heads/) and its own fields in `params`."""

    type: str = "raw"
    score_threshold: float = 0.25
    iou_threshold: float = 0.5
    max_detections: int = 100
    nms: str = "none"              # "graph": every artifact gets NMS in its graph (a profile may say per artifact)
    params: dict = field(default_factory=dict)   # the head type's fields (boxes_scores: boxes, scores, ...)

    COMMON = ("type", "score_threshold", "iou_threshold", "max_detections", "nms")

    def to_dict(self) -> dict:
        """Flat, as written in the spec (and read by the demo page and apps)."""
        return {**{k: getattr(self, k) for k in self.COMMON}, **self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "Head":
        return cls(**{k: d[k] for k in cls.COMMON if k in d},
                   params={k: v for k, v in d.items() if k not in cls.COMMON})


@dataclass
class Source:
    kind: str
    path: str = ""                 # absolute; a model file or SavedModel folder
    factory: str = ""              # "package.module:function" returning an nn.Module
    weights: str = ""              # absolute; optional state_dict for the factory
    python_path: list[str] = field(default_factory=list)  # folders to import the factory from
    opset: int = 17
    imports: list[str] = field(default_factory=list)      # modules to import first (custom Keras layers)
    recipe: str = ""               # a family recipe (frontends/recipes/) that lowers the factory's model
    exporter: str = "auto"         # torch: dynamo first then TorchScript (auto), or only one of them


DEFAULT_DATA_SPLITS = {"calibration": "train", "evaluation": "val"}


@dataclass
class DataSpec:
    calibration: str = ""
    evaluation: str = ""
    calibration_images: int = 64
    evaluation_images: int = 64
    calibration_split: str = ""    # of a dataset with splits; "" is train for calibration, val for evaluation
    evaluation_split: str = ""


@dataclass
class ModelSpec:
    name: str
    source: Source
    inputs: list[InputSpec]
    outputs: list[str]
    preprocess: Preprocess
    head: Head
    labels: list[str]
    data: DataSpec
    path: str = ""                 # where the spec was read from
    version: str = "0"             # the model's version: names the firmware bundles

    def to_dict(self) -> dict:
        return {**asdict(self), "head": self.head.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(name=d["name"], source=Source(**d["source"]),
                   inputs=[InputSpec(**i) for i in d["inputs"]], outputs=list(d["outputs"]),
                   preprocess=Preprocess(**d["preprocess"]), head=Head.from_dict(d["head"]),
                   labels=list(d["labels"]), data=DataSpec(**d["data"]), path=d.get("path", ""),
                   version=d.get("version", "0"))


def _resolve(base: Path, value: str) -> str:
    return str((base / value).resolve()) if value else ""


def load_model_spec(path: str | Path) -> ModelSpec:
    from deployer.frontends import registry as frontends
    from deployer.frontends.recipes import registry as recipes

    path = Path(path)
    raw = _read_toml(path, "model spec")
    base = path.resolve().parent
    top = Reader(path, raw)
    top.reject_unknown({"name", "version", "labels", "source", "inputs", "outputs", "preprocess", "head", "data"})
    name = top.get("name", str, "a model name (letters, digits, - and _)")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise top.fail("name", "a model name of letters, digits, - and _", name)
    labels = top.get("labels", list, "a list of class names", [])
    if not all(isinstance(x, str) for x in labels):
        raise top.fail("labels", "a list of strings", labels)

    src = Reader(path, top.get("source", dict, "a [source] table"), "source.")
    src.reject_unknown({"kind", "path", "factory", "weights", "python_path", "opset", "imports", "recipe",
                        "exporter"})
    source = Source(
        kind=src.get("kind", str, "the source framework", choices=tuple(frontends())),
        path=_resolve(base, src.get("path", str, "a path to the model file", "")),
        factory=src.get("factory", str, "'package.module:function'", ""),
        weights=_resolve(base, src.get("weights", str, "a path to a weights file", "")),
        python_path=[_resolve(base, p) for p in src.get("python_path", list, "a list of folders", [])],
        opset=src.get("opset", int, "an ONNX opset number", 17),
        imports=src.get("imports", list, "a list of module names", []),
        recipe=src.get("recipe", str, "a recipe", "", choices=("", *recipes())),
        exporter=src.get("exporter", str, "the torch ONNX exporter", "auto", choices=("auto", "dynamo", "torchscript")),
    )
    if source.recipe and not source.factory:
        raise src.fail("recipe", "a recipe together with 'factory' (the model builder it applies to)", source.recipe)
    if bool(source.path) == bool(source.factory):
        raise UserError(f"{path}: [source] needs exactly one of 'path' (a model file) "
                        f"or 'factory' ('package.module:function')")
    if source.factory and (source.factory.count(":") != 1 or source.kind != "torch"):
        raise src.fail("factory", "'package.module:function' (torch sources only)", source.factory)
    if source.weights and not source.factory:
        raise src.fail("weights", "a weights file only together with 'factory'", source.weights)
    for key, value in (("path", source.path), ("weights", source.weights)):
        if value and not Path(value).exists():
            raise UserError(f"{path}: field 'source.{key}': file not found: {value}")
    if not 11 <= source.opset <= 21:
        raise src.fail("opset", "an ONNX opset between 11 and 21", source.opset)

    inputs = []
    for r in top.tables("inputs"):
        r.reject_unknown({"name", "shape", "layout", "dtype"})
        inp = InputSpec(name=r.get("name", str, "the input tensor name"),
                        shape=r.numbers("shape", "a list of 4 positive integers, e.g. [1, 3, 224, 224]",
                                        length=4, kind=int),
                        layout=r.get("layout", str, "NCHW or NHWC", "NCHW", choices=LAYOUTS),
                        dtype=r.get("dtype", str, "float32", "float32", choices=DTYPES))
        if any(d <= 0 for d in inp.shape):
            raise r.fail("shape", "positive static dimensions", inp.shape)
        channels = inp.shape[1] if inp.layout == "NCHW" else inp.shape[3]
        if channels != 3:
            raise r.fail("shape", f"3 colour channels in {inp.layout} order", inp.shape)
        inputs.append(inp)

    outs = top.sub("outputs")
    outs.reject_unknown({"names"})
    outputs = outs.get("names", list, "a list of output tensor names")
    if not outputs or not all(isinstance(o, str) for o in outputs):
        raise outs.fail("names", "a non-empty list of strings", outputs)

    pre = Reader(path, top.get("preprocess", dict, "a [preprocess] table", {}), "preprocess.")
    pre.reject_unknown({"resize", "pad_value", "scale", "mean", "std", "channel_order"})
    preprocess = Preprocess(
        resize=pre.get("resize", str, "letterbox or stretch", "letterbox", choices=RESIZE_MODES),
        pad_value=pre.get("pad_value", float, "a number 0..255", 114.0),
        scale=pre.get("scale", float, "a positive number", 255.0),
        mean=pre.numbers("mean", "3 numbers", 3, [0.0, 0.0, 0.0]),
        std=pre.numbers("std", "3 positive numbers", 3, [1.0, 1.0, 1.0]),
        channel_order=pre.get("channel_order", str, "RGB or BGR", "RGB", choices=CHANNEL_ORDERS),
    )
    if preprocess.scale <= 0 or any(s <= 0 for s in preprocess.std):
        raise pre.fail("std", "positive scale and std values", preprocess.std)

    head = _read_head(Reader(path, top.get("head", dict, "a [head] table", {}), "head."), outputs, labels)
    if head.type == "anchors" and not head.params.get("anchors") and not source.recipe:
        raise UserError(f"{path}: field 'head.anchors': an anchors head needs the anchors: a .npy file of (N, 4) "
                        "xyxy boxes in input pixels, or a source recipe that writes them (source.recipe = "
                        "'torchvision')")
    if source.recipe and head.type not in recipes()[source.recipe].heads:
        wanted = " or ".join(f"'{h}'" for h in recipes()[source.recipe].heads)
        raise UserError(f"{path}: field 'head.type': the '{source.recipe}' recipe's outputs need head.type = "
                        f"{wanted}, got '{head.type}'")

    dt = Reader(path, top.get("data", dict, "a [data] table", {}), "data.")
    dt.reject_unknown({"calibration", "evaluation", "calibration_images", "evaluation_images",
                       "calibration_split", "evaluation_split"})
    data = DataSpec(
        calibration=_resolve(base, dt.get("calibration", str, "a dataset folder or file", "")),
        evaluation=_resolve(base, dt.get("evaluation", str, "a dataset folder or file", "")),
        calibration_images=dt.get("calibration_images", int, "a positive integer", 64),
        evaluation_images=dt.get("evaluation_images", int, "a positive integer", 64),
        calibration_split=dt.get("calibration_split", str, "a split of the dataset (train, val, test, trainval...)", ""),
        evaluation_split=dt.get("evaluation_split", str, "a split of the dataset (train, val, test, trainval...)", ""),
    )
    for key in ("calibration", "evaluation"):
        value = getattr(data, key)
        if value and not Path(value).exists():
            raise UserError(f"{path}: field 'data.{key}': not found: {value}")
        _check_split(dt, data, key)
    if data.calibration_images <= 0 or data.evaluation_images <= 0:
        raise dt.fail("evaluation_images", "positive image counts")

    version = top.get("version", str, "a version string (names the firmware bundles)", "0")
    if not version or not all(c.isalnum() or c in ".-_+" for c in version):
        raise top.fail("version", "a version of letters, digits and . - _ +", version)
    return ModelSpec(name=name, source=source, inputs=inputs, outputs=outputs, preprocess=preprocess,
                     head=head, labels=labels, data=data, path=str(path.resolve()), version=version)


def _check_split(dt: Reader, data: DataSpec, role: str) -> None:
    """The split a role reads must be one its dataset has (data.yaml splits, VOC split lists)."""
    from deployer.datasets.base import SPLITS_FROM, dataset_splits, splits_optional

    dataset, given = getattr(data, role), getattr(data, f"{role}_split")
    if not dataset:
        return  # the dataset comes from the command line; its split is checked when it is read
    splits = dataset_splits(dataset)
    if given and given not in splits:
        raise dt.fail(f"{role}_split", f"one of the splits of {dataset}: {', '.join(splits)}" if splits else
                      f"no split: {dataset} has none ({SPLITS_FROM})", given)
    if splits and not given and DEFAULT_DATA_SPLITS[role] not in splits and not splits_optional(dataset):
        raise dt.fail(role, f"a dataset with a '{DEFAULT_DATA_SPLITS[role]}' split, or data.{role}_split naming "
                      f"one of its splits ({', '.join(splits)})", dataset)


def _read_head(hd: Reader, outputs: list[str], labels: list[str]) -> Head:
    from deployer.heads import registry as heads

    kind = hd.get("type", str, "the head type", "raw", choices=tuple(heads()))
    head_type = heads()[kind]
    head = Head(type=kind,
                score_threshold=hd.get("score_threshold", float, "a number in 0..1", 0.25),
                iou_threshold=hd.get("iou_threshold", float, "a number in 0..1", 0.5),
                max_detections=hd.get("max_detections", int, "a positive integer", 100),
                nms=hd.get("nms", str, "where NMS runs", "none", choices=NMS_MODES))
    for key in ("score_threshold", "iou_threshold"):
        if not 0 <= getattr(head, key) <= 1:
            raise hd.fail(key, "a number in 0..1", getattr(head, key))
    if head.max_detections <= 0:
        raise hd.fail("max_detections", "a positive integer", head.max_detections)
    own = Reader(hd.path, {k: v for k, v in hd.table.items() if k not in Head.COMMON}, hd.prefix)
    head.params = read_options(own, head_type.fields, None, f"head type '{kind}'", noun="field")
    for key in head_type.paths:
        if head.params.get(key):
            head.params[key] = _resolve(Path(hd.path).parent, head.params[key])
            if not Path(head.params[key]).is_file():
                raise hd.fail(key, "an existing file (relative to the spec's folder)", head.params[key])
    if head.nms == "graph" and head_type.graph is None:
        raise hd.fail("nms", f"'none': NMS in the graph needs a head whose decoding deployer can add to the graph "
                             f"({', '.join(n for n, h in heads().items() if h.graph)}), not '{kind}'", head.nms)
    problem = head_type.validate(head.params, outputs, labels) if head_type.validate else None
    if problem:
        where, expected, got = problem
        raise UserError(f"{hd.path}: field '{where}': expected {expected}, got {got!r}")
    return head


# ----------------------------------------------------------------------------- target profile

@dataclass
class ArtifactPlan:
    backend: str
    precision: str
    runtimes: list[str] = field(default_factory=list)   # every runtime the artifact is verified in
    options: dict = field(default_factory=dict)         # backend options, validated, defaults filled in
    runtime_settings: dict = field(default_factory=dict)  # settings of the runners (threads, hints)
    thresholds: dict = field(default_factory=dict)
    profile_thresholds: dict = field(default_factory=dict)   # those the profile set (the rest are defaults)
    warn_only: bool = False
    variant: str = ""              # tells apart two artifacts of one backend and precision
    verify: str = "required"       # "optional": an unverified verdict does not fail the build
    nms: str = ""                  # "graph" or "none" for this artifact; "" follows the spec's [head] nms

    def nms_for(self, spec_nms: str) -> str:
        return self.nms or spec_nms

    @property
    def runtime(self) -> str:
        """The primary runtime (benchmarks, per-layer analysis)."""
        return self.runtimes[0]

    @property
    def key(self) -> str:
        return f"{self.backend}_{self.stem_suffix}"

    @property
    def stem_suffix(self) -> str:
        return f"{self.precision}_{self.variant}" if self.variant else self.precision


@dataclass
class TargetProfile:
    name: str
    description: str
    artifacts: list[ArtifactPlan]
    path: str = ""
    page: bool = False             # write and check the web demo page
    bundle: bool = False           # write dist/<model>/<model>-<target>-<version>.tar.gz (firmware/bundle.py)


def _thresholds(reader: Reader) -> dict:
    reader.reject_unknown(set(THRESHOLD_KEYS))
    return {k: reader.get(k, float, "a number") for k in reader.table}


def _read_runtimes(r: Reader, backend) -> list[str]:
    """The artifact's runtimes: known, and each able to run this backend's format."""
    from deployer import runtimes as registry

    runtime = r.get("runtime", (str, list), "a runtime name or a list of them", list(backend.runtimes))
    names = [runtime] if isinstance(runtime, str) else list(runtime)
    if not names or not all(isinstance(x, str) and x for x in names):
        raise r.fail("runtime", "a runtime (or list of runtimes) to verify the artifact with", runtime)
    known = registry.registry()
    for name in names:
        if name not in known:
            raise r.fail("runtime", f"runtimes among {', '.join(known)}", name)
        rt = known[name]
        if backend.options is not None and backend.format not in rt.accepts:
            fits = [n for n, x in known.items() if backend.format in x.accepts]
            raise r.unknown("runtime", f"'{name}' does not run {backend.name} artifacts ({backend.format}); "
                                       f"runtimes that do: {', '.join(fits)}")
    return names


def _read_runtime_settings(r: Reader, runtimes: list[str]) -> dict:
    """`runtime_settings`: only settings that every listed runtime declares; only those given
    are kept (a runner applies its own defaults and records them in `settings`)."""
    from deployer import runtimes as registry

    table = r.sub("runtime_settings", {})
    declared = [registry.get(n) for n in runtimes]
    common = {o.name: o for o in declared[0].settings}
    for rt in declared[1:]:
        common = {k: o for k, o in common.items() if k in {x.name for x in rt.settings}}
    for key in table.table:
        if key not in common:
            lacking = [rt.name for rt in declared if key not in {o.name for o in rt.settings}]
            raise table.unknown(key, f"not a setting of runtime {', '.join(lacking)} "
                                     f"(known: {', '.join(common) or 'none'})")
    values = read_options(table, tuple(common.values()), None, f"runtime {', '.join(runtimes)}")
    return {k: v for k, v in values.items() if k in table.table}


def _read_options(r: Reader, backend, precision: str) -> dict:
    given = r.get("options", dict, "a table of backend options", {})
    if backend.options is None:   # a custom backend: its options are its own business
        return dict(given)
    if "runtime" in given:
        raise r.unknown("options.runtime", "runtime settings have their own table now: "
                                           "runtime_settings = { ... } beside 'runtime'")
    return read_options(r.sub("options", {}), backend.options, precision, backend.name)


def load_target_profile(path: str | Path) -> TargetProfile:
    from deployer import backends

    path = Path(path)
    raw = _read_toml(path, "target profile")
    top = Reader(path, raw)
    top.reject_unknown({"name", "description", "artifacts", "thresholds", "page", "bundle"})
    name = top.get("name", str, "the platform name", path.stem)
    shared = {}
    thr = top.get("thresholds", dict, "a table of precision -> thresholds", {})
    for precision, table in thr.items():
        if precision not in PRECISIONS or not isinstance(table, dict):
            raise top.fail(f"thresholds.{precision}", f"a table named after a precision ({', '.join(PRECISIONS)})")
        shared[precision] = _thresholds(Reader(path, table, f"thresholds.{precision}."))
    plans = []
    known = ", ".join(backends.registry())
    for r in top.tables("artifacts"):
        r.reject_unknown({"backend", "precision", "variant", "runtime", "runtime_settings", "options", "thresholds",
                          "warn_only", "verify", "nms"})
        name_ = r.get("backend", str, f"a backend ({known}) or 'package.module:function'")
        if ":" not in name_ and name_ not in backends.registry():
            raise r.fail("backend", f"one of {known} or 'package.module:function'", name_)
        backend = backends.get(name_)
        precision = r.get("precision", str, "a precision", choices=PRECISIONS)
        if precision not in backend.precisions:
            raise r.unknown("precision", f"backend '{backend.name}' does not build '{precision}' "
                                         f"(it builds: {', '.join(backend.precisions)})")
        runtimes = _read_runtimes(r, backend)
        own = dict(shared.get(precision, {}))
        if "thresholds" in r.table:
            own.update(_thresholds(r.sub("thresholds")))
        thresholds = {**DEFAULT_THRESHOLDS.get(precision, {}), **own}
        plan = ArtifactPlan(backend=name_, precision=precision, runtimes=runtimes,
                            options=_read_options(r, backend, precision),
                            runtime_settings=_read_runtime_settings(r, runtimes),
                            thresholds=thresholds, profile_thresholds=own,
                            warn_only=r.get("warn_only", bool, "true or false", False),
                            variant=r.get("variant", str, "a short name of letters, digits and -", ""),
                            verify=r.get("verify", str, "required or optional", "required",
                                         choices=VERIFY_MODES),
                            nms=r.get("nms", str, "where NMS runs: graph or none", "", choices=NMS_MODES))
        if plan.nms == "graph" and not backend.graph_nms and backend.options is not None:
            raise r.unknown("nms", f"backend '{backend.name}' cannot put NMS in its artifact's graph "
                                   f"(backends that can: {', '.join(n for n, b in backends.registry().items() if b.graph_nms)})")
        if plan.nms == "graph" and not plan.variant:
            plan.variant = "nms"   # beside the same backend and precision without NMS
        if plan.variant and not all(c.isalnum() or c == "-" for c in plan.variant):
            raise r.fail("variant", "a short name of letters, digits and -", plan.variant)
        if any(p.key == plan.key for p in plans):
            raise r.fail("precision", f"one artifact per backend and precision, or a distinct 'variant' "
                         f"({plan.key} appears twice)")
        plans.append(plan)
    return TargetProfile(name=name, description=top.get("description", str, "a string", ""),
                         artifacts=plans, path=str(path.resolve()), page=top.get("page", bool, "true or false", False),
                         bundle=top.get("bundle", bool, "true or false", False))


def find_target(name_or_path: str, targets_dir: Path) -> Path:
    """A target is a profile path or the name of a file in targets/."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    found = targets_dir / f"{name_or_path}.toml"
    if not found.is_file():
        known = sorted(p.stem for p in targets_dir.glob("*.toml"))
        raise UserError(f"unknown target '{name_or_path}': no {found} (known targets: {', '.join(known)})")
    return found
