"""The `deployer` command: argument parsing and user-facing errors only.

Exit status: 0 all built and passing, 1 a target failed or a verdict failed, 2 a usage
or input error (printed as one message naming the file or field, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from deployer import __version__
from deployer.errors import DeployerError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_TARGETS = ("web", "android", "embedded", "ios")   # `deployer build` without --target, `make demo`


def _console(stderr: bool = False):
    """Where tables and progress go: stdout, or stderr when stdout carries --json."""
    from rich.console import Console

    console = Console(highlight=False, stderr=stderr)
    if not console.is_terminal:
        # Logs and CI: a table wide enough not to wrap (rich assumes 80 columns otherwise).
        console = Console(highlight=False, width=200, stderr=stderr)
    return console


def _output_folder(value: str, option: str = "--out") -> Path:
    """The output folder, checked before any work: a folder (made if missing) this process can
    write into."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {value}: is a file, not a folder; give a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".deployer-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"{option} {value}: cannot write there ({exc.strerror or exc}); choose a writable folder") \
            from None
    return path


def _junit_path(value: str | None) -> Path | None:
    """--junit FILE, checked before any work: its folder must exist and be writable."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise UserError(f"--junit {value}: is a folder; give a file name (e.g. {path / 'deployer-junit.xml'})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"--junit {value}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--junit {value}: folder {folder} is not writable")
    return path


def _finish(manifest: dict, model_dir: Path, targets: list[str], status: int, args, console) -> int:
    """The end of a build or verify: a summary line per target, where the results are, the
    JUnit file, and with --json the same summary on stdout."""
    from deployer.report import junit
    from deployer.report.summary import line, target_summaries

    summaries = target_summaries(manifest, targets)
    for s in summaries:
        style = "green" if s["status"] == "built" and not s["problems"] else "bold red"
        console.print(f"[{style}]{line(s)}[/]", highlight=False)
    console.print(f"manifest: {model_dir / 'manifest.json'}  report: {model_dir / 'report.html'}")
    junit_file = getattr(args, "junit", None)
    if junit_file:
        junit.write(junit_file, manifest, targets)
        console.print(f"JUnit results: {junit_file}")
    if getattr(args, "json", False):
        print(json.dumps({"model": manifest["model"], "exit_status": status, "targets": summaries,
                          "build_seconds": manifest.get("build_seconds"),
                          "manifest": str(model_dir / "manifest.json"), "report": str(model_dir / "report.html"),
                          "checksums": str(model_dir / "SHA256SUMS"),
                          **({"junit": str(junit_file)} if junit_file else {})}, indent=2))
    return status


def _targets_dir() -> Path:
    # targets/ of the working folder first (the user's boards), then the bundled ones.
    local = Path.cwd() / "targets"
    return local if local.is_dir() else Path(__file__).resolve().parent.parent / "targets"


def _steps(manifest: dict, targets: list[str]) -> list[dict]:
    """Every stage record of a build: the shared ones and each artifact's of these targets."""
    return [*manifest.get("stages", []),
            *(s for a in manifest["artifacts"] if a["target"] in targets for s in a.get("stages", []))]


JUNIT_HELP = ("also write the verdicts as JUnit XML to FILE (a test suite per target, a case per artifact and "
              "runtime: failed verdicts fail, unverified ones are skipped)")
JSON_HELP = "print the per-target summary as JSON on stdout (tables and progress go to stderr)"
ALLOW_UNVERIFIED_HELP = ("exit 0 even when an artifact could not be verified (its runtime cannot run here, or no "
                         "threshold applies); by default that counts as not passed")


def _status(pipeline, manifest: dict, targets: list[str], allow_unverified: bool, console) -> int:
    """The exit status, saying why when unverified artifacts decide it."""
    status = pipeline.exit_status(manifest, targets, allow_unverified)
    missing = pipeline.unverified(manifest, targets)
    if missing:
        names = ", ".join(f"{a['target']}/{a['backend']} {a['precision']}" for a in missing)
        console.print(f"[magenta]unverified[/]: {names}: parity could not be measured (reasons above); "
                      + ("allowed by --allow-unverified" if allow_unverified else
                         "this fails the build: pass --allow-unverified, or set verify = \"optional\" on the "
                         "artifact in its profile"), highlight=False)
    return status


def cmd_build(args) -> int:
    from deployer import pipeline
    from deployer.progress import for_console as progress_for
    from deployer.report.table import print_report
    from deployer.spec import find_target, load_model_spec, load_target_profile
    from deployer.stages import BuildOptions, default_jobs

    spec = load_model_spec(args.spec)
    if getattr(args, "split", None):
        from deployer.inputs import with_split

        spec = with_split(spec, args.split, args.calib or "", args.eval or "")
    targets = args.target or list(DEFAULT_TARGETS)
    profiles = [load_target_profile(find_target(t, _targets_dir())) for t in targets]
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise UserError(f"a target is given twice: {', '.join(names)}")
    args.junit = _junit_path(args.junit)
    _output_folder(args.out)
    console = _console(stderr=args.json)
    jobs = args.jobs or default_jobs()
    console.print(f"deployer {__version__}: building [bold]{spec.name}[/] for {', '.join(names)} into {args.out}/ "
                  f"({jobs} jobs{', no cache' if args.no_cache else ''})")
    with progress_for(console) as progress:
        opts = BuildOptions(out=Path(args.out), jobs=jobs, timeout=args.timeout, use_cache=not args.no_cache,
                            progress=progress)
        manifest = pipeline.build(spec, profiles, opts, calibration=args.calib or "", evaluation=args.eval or "")
    print_report(manifest, names, console)
    _print_lint(manifest.get("int8_lint"), console)
    _print_coverage(manifest.get("calibration_coverage"), console)
    reused = sum(s["reused"] for s in _steps(manifest, names))
    console.print(f"built in {manifest['build_seconds']:.1f} s ({reused} of {len(_steps(manifest, names))} stages "
                  f"reused from the cache)")
    status = _status(pipeline, manifest, names, args.allow_unverified, console)
    return _finish(manifest, Path(args.out) / spec.name, names, status, args, console)


def _print_lint(found, console) -> None:
    """The INT8 lint's findings, one line each (the manifest's `int8_lint` has them all)."""
    if isinstance(found, dict):
        console.print(f"INT8 lint could not run: {found['error'].splitlines()[0]}")
        return
    for f in found or []:
        console.print(f"INT8 lint: node '{f['node']}' ({f['op']}) {f['issue']}; {f['action']}",
                      markup=False, highlight=False)


def _print_coverage(covered, console) -> None:
    """A warning naming the layers where the evaluation images exceed the calibration ranges."""
    if not covered or "error" in covered or not covered["beyond_count"]:
        return
    worst = ", ".join(f"'{r['node']}' ({r['op']}, {r['ratio']:.1f}x)" for r in covered["beyond"][:3])
    console.print(f"calibration coverage: on {covered['beyond_count']} of {covered['tensors']} tensors the evaluation "
                  f"images exceed the calibration range by more than {covered['margin']:.0%} (worst: {worst}); "
                  "calibrate on images like those the model will see", markup=False, highlight=False)


def cmd_verify(args) -> int:
    from deployer import checks, pipeline
    from deployer.report.manifest import read_manifest
    from deployer.report.table import print_layers, print_report
    from deployer.stages import BuildOptions, default_jobs

    args.junit = _junit_path(args.junit)
    model_dir, manifest = read_manifest(args.dist)
    opts = BuildOptions(out=model_dir.parent, jobs=args.jobs or default_jobs(), timeout=args.timeout)
    manifest = checks.verify(model_dir, manifest, opts)
    targets = sorted({a["target"] for a in manifest["artifacts"]})
    console = _console(stderr=args.json)
    print_report(manifest, targets, console)
    if args.layers:
        manifest = checks.layer_report(model_dir, manifest, opts, args.sqnr_threshold, args.layer_images)
        print_layers(manifest, console)
    status = _status(pipeline, manifest, targets, args.allow_unverified, console)
    return _finish(manifest, model_dir, targets, status, args, console)


CONVERT_TO = ("tf", "torch", "onnx")   # targets/<name>.toml each


def cmd_convert(args) -> int:
    """One target of the framework bridge (targets/tf.toml, torch.toml, onnx.toml), built and
    verified like any, then where its converted models' specs are."""
    import dataclasses

    from deployer.bridge import spec_file
    from deployer.report.manifest import read_manifest
    from deployer.report.publish import publish
    from deployer.spec import Head, load_model_spec

    build_args = argparse.Namespace(spec=args.spec, target=[args.to], calib=None, eval=None, split=None,
                                    out=args.out, jobs=args.jobs, timeout=args.timeout, no_cache=args.no_cache,
                                    allow_unverified=False, junit=None, json=False)
    spec = load_model_spec(args.spec)
    own = {"torch": "torch", "tensorflow": "tf", "onnx": "onnx"}.get(spec.source.kind)
    if own == args.to:   # allowed (a re-export, verified), but rarely what was meant
        print(f"deployer: note: {args.spec} is already a {spec.source.kind} model: --to {args.to} re-exports it "
              "in deployer's own form, verified against it", file=sys.stderr)
    status = cmd_build(build_args)
    model_dir, manifest = read_manifest(Path(args.out) / spec.name)
    console = _console()
    # Only a target that landed has specs to build from (a failed one is in .rejected/).
    landed = manifest.get("targets", {}).get(args.to, {}).get("status") == "built"
    built = [a for a in manifest["artifacts"] if landed and a["target"] == args.to and a["status"] == "built"
             and a.get("parity", {}).get("verdict") in ("pass", "warn")]
    if args.to == "onnx" and built:   # the ONNX backend writes no spec of its own: the bridge does
        entry = built[0]
        toml = model_dir / Path(entry["path"]).with_suffix(".toml")
        inputs = [dataclasses.asdict(i) for i in spec.inputs]
        # The head as the build used it: a recipe's lowering fills in fields (its anchors).
        head = json.loads((model_dir / args.to / "deployer.json").read_text())["head"]
        used = dataclasses.replace(spec, head=Head.from_dict(head))
        spec_file.write(used, f"{spec.name}_onnx", {"kind": "onnx", "path": Path(entry["path"]).name},
                        inputs, toml.parent, toml.stem)
        publish(model_dir, manifest)   # SHA256SUMS covers the new file
        console.print(f"spec of the converted model: {toml}")
    for entry in built:
        for f in entry.get("files", []):
            if f.endswith(".toml"):
                console.print(f"spec of the converted model: {model_dir / f}")
    return status


def cmd_merge(args) -> int:
    from deployer import pipeline
    from deployer.report.merge import check, merge
    from deployer.report.table import print_report

    args.junit = _junit_path(args.junit)
    sources = check([Path(d) for d in args.dirs])   # refused before --out is made
    model_dir, manifest = merge(sources, _output_folder(args.out))
    console = _console(stderr=args.json)
    targets = list(manifest["targets"])
    print_report(manifest, targets, console)
    status = _status(pipeline, manifest, targets, args.allow_unverified, console)
    return _finish(manifest, model_dir, targets, status, args, console)


def cmd_bench(args) -> int:
    from deployer import checks
    from deployer.report.manifest import read_manifest
    from deployer.report.table import bench_table
    from deployer.stages import BuildOptions

    source = Path(args.dist)
    if source.suffix == ".toml":  # a model spec: bench its build, building it first if needed
        from deployer.spec import load_model_spec

        source = Path(args.out) / load_model_spec(source).name
        if not (source / "manifest.json").is_file():
            status = cmd_build(argparse.Namespace(spec=args.dist, target=None, calib=None, eval=None, out=args.out,
                                                  jobs=None, timeout=args.timeout, no_cache=False,
                                                  allow_unverified=False, split=None, junit=None, json=False))
            if status != EXIT_OK:
                return status
    model_dir, manifest = read_manifest(source)
    opts = BuildOptions(out=model_dir.parent, timeout=args.timeout)
    manifest = checks.bench(model_dir, manifest, opts, runs=args.runs, warmup=args.warmup)
    console = _console()
    console.print(bench_table(manifest))
    console.print(f"report (with latency): {model_dir / 'report.html'}")
    return EXIT_OK


def cmd_inspect(args) -> int:
    from deployer import stages

    path = Path(args.model)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    other = {".xml": "an OpenVINO IR", ".bin": "OpenVINO IR weights", ".mlpackage": "a CoreML package",
             ".mlmodel": "a CoreML model", ".json": "a TF.js graph model or JSON file", ".pt2": "a PyTorch model",
             ".pt": "a PyTorch model", ".torchscript": "a PyTorch model", ".keras": "a Keras model"}
    if path.suffix.lower() in other:
        raise UserError(f"{path}: {other[path.suffix.lower()]}; inspect reads ONNX models and .tflite files: "
                        "inspect the ONNX it was built from (`deployer build` writes it for every model, see the "
                        "manifest's onnx), or a .tflite")
    if not path.is_file():
        raise UserError(f"{path}: a folder; inspect reads an ONNX model or a .tflite file")
    tflite = path.suffix == ".tflite"   # a flatbuffer: its ops and TFLM's support (firmware/micro.py)
    with tempfile.TemporaryDirectory() as tmp:
        info = stages.Stages(Path(tmp)).run(stages.INSPECT_TFLITE if tflite else stages.INSPECT, ("", "", "inspect"),
                                            path=str(path.resolve())).value
        if args.int8 and not tflite:
            info["int8_lint"] = stages.Stages(Path(tmp)).run(stages.INT8_LINT, ("", "", "int8 lint"),
                                                             onnx_path=str(path.resolve())).value
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    console = _console()
    console.print(f"[bold]{path}[/]  opset {info['opset']}  producer {info['producer']}")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            console.print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']} {t['shape']}")
    console.print(_support_table(info))
    for backend, unsupported in info["support"].items():
        state = "ok" if not unsupported else f"unsupported: {'; '.join(unsupported)}"
        console.print(f"  {backend:9} {state}")
    if info["metadata"]:
        console.print("  metadata: " + ", ".join(sorted(info["metadata"])))
    if args.int8:
        _print_lint(info["int8_lint"], console)
        console.print(f"INT8 lint: {len(info['int8_lint'])} finding(s) from the graph; a build also checks the "
                      "ranges of concatenated tensors on its calibration images")
    return EXIT_OK


def _support_table(info: dict):
    """Per op: its count and whether each backend takes it (a backend whose refusal names no
    op of the model marks none: its line below says why)."""
    from rich.table import Table

    table = Table(title="ops and backend support", show_lines=False)
    table.add_column("op")
    table.add_column("count", justify="right")
    for backend in info["support"]:
        table.add_column(backend)
    for op, count in sorted(info["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        cells = []
        for unsupported in info["support"].values():
            refused = any(u == op or u.startswith(f"{op} ") for u in unsupported)
            cells.append("[red]no[/]" if refused else "yes")
        table.add_row(op, str(count), *cells)
    return table


READ_FORMATS = ("coco", "voc", "yolo", "openimages", "folder")


def cmd_data_synth(args) -> int:
    from deployer.datasets import synth_writer

    written = synth_writer.write(Path(args.out), args.count, args.seed, args.format)
    for fmt, path in written.items():
        print(f"{fmt}: {args.count} images -> {path}")
    return EXIT_OK


def cmd_data_convert(args) -> int:
    from deployer.datasets.base import open_dataset, write_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = open_dataset(args.src, getattr(args, "from"), args.split)
        count = write_dataset(dataset, args.dst, args.to)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"converted {count} images from {dataset.format}{f' (split {args.split})' if args.split else ''} "
          f"to {args.to}: {args.dst}"
          + (f" ({len(dataset.skipped)} skipped: cannot read or decode)" if dataset.skipped else "")
          + (f"; {dataset.left_out} difficult objects left out" if dataset.left_out else ""))
    return EXIT_OK


def cmd_data_info(args) -> int:
    from deployer.datasets.info import describe

    info = describe(args.src, getattr(args, "from"), args.split)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    split = f", split {info['split']}" if "split" in info else ""
    print(f"{info['source']} ({info['format']}{split}): {info['images']} images, {info['boxes']} boxes, "
          f"{info['skipped']} skipped")
    for name, part in info.get("splits", {}).items():
        print(f"  {'split ' + name + ':':20} {part['images']} images, {part['boxes']} boxes, "
              f"{part['skipped']} skipped")
    if info.get("left_out"):
        print(f"  {info['left_out']} objects marked difficult are left out of the labels (VOC evaluation "
              "ignores them)")
    if info.get("skipped_files"):
        more = len(info["skipped_files"]) - 3
        print("  skipped (cannot read or decode): " + ", ".join(info["skipped_files"][:3])
              + (f" and {more} more" if more > 0 else ""))
    for name, n in info["boxes_per_class"].items():
        print(f"  {name:20} {n}")
    sizes = info["image_sizes"]
    if sizes:
        print(f"  image sizes: width {sizes['min_width']}..{sizes['max_width']}, "
              f"height {sizes['min_height']}..{sizes['max_height']} ({sizes['distinct']} distinct)")
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deployer", description="Compile object detectors for web, mobile and "
                                "embedded targets, and prove accuracy parity in each target's runtime.")
    p.add_argument("--version", action="version", version=f"deployer {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="compile a model spec for one or more targets")
    b.add_argument("spec", help="model spec (.toml)")
    b.add_argument("--target", action="append", help="target name in targets/ or a profile .toml (repeatable; "
                   f"default: {', '.join(DEFAULT_TARGETS)})")
    b.add_argument("--calib", help="calibration dataset: COCO, VOC, YOLO (folder or Ultralytics data.yaml), Open Images "
                   "CSV or an image folder")
    b.add_argument("--eval", help="evaluation dataset, same formats (labelled: also gives labelled mAP)")
    b.add_argument("--split",
                   help="split of the datasets with splits (Ultralytics data.yaml, Pascal VOC ImageSets/Main) to "
                   "calibrate and evaluate on, "
                   "given here or in the spec; overrides the spec's data.calibration_split and "
                   "data.evaluation_split (default: train for calibration, val for evaluation)")
    b.add_argument("--out", default="dist", help="output folder (default: dist)")
    b.add_argument("--jobs", type=_positive(int), default=None,
                   help="stages run side by side, each in a warm worker (default: the number of cores)")
    b.add_argument("--timeout", type=_positive(float, 1), default=1800, help="seconds allowed per stage (default: 1800)")
    b.add_argument("--no-cache", action="store_true",
                   help="run every stage again instead of reusing cached results (the cache is still refreshed)")
    b.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)
    b.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    b.add_argument("--json", action="store_true", help=JSON_HELP)
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("verify", help="re-run parity on built artifacts")
    v.add_argument("dist", help="dist/<model>/ folder or its manifest.json")
    v.add_argument("--jobs", type=_positive(int), default=None, help="stages run side by side (default: the number of cores)")
    v.add_argument("--timeout", type=_positive(float, 1), default=1800)
    v.add_argument("--layers", action="store_true", help="also report per-layer SQNR against the float ONNX graph")
    v.add_argument("--sqnr-threshold", type=float, default=30.0, help="dB below which a tensor counts as damaged")
    v.add_argument("--layer-images", type=_positive(int), default=16, help="evaluation images for --layers (default: 16)")
    v.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)
    v.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    v.add_argument("--json", action="store_true", help=JSON_HELP)
    v.set_defaults(func=cmd_verify)

    cv = sub.add_parser("convert", help="the model in another framework (TensorFlow, PyTorch, ONNX), verified "
                        "against the source, with a spec beside it")
    cv.add_argument("spec", help="model spec (.toml)")
    cv.add_argument("--to", required=True, choices=CONVERT_TO)
    cv.add_argument("--out", default="dist", help="output folder (default: dist)")
    cv.add_argument("--jobs", type=_positive(int), default=None)
    cv.add_argument("--timeout", type=_positive(float, 1), default=1800)
    cv.add_argument("--no-cache", action="store_true")
    cv.set_defaults(func=cmd_convert)

    m = sub.add_parser("merge", help="combine the outputs of builds of separate targets (CI jobs) into one folder")
    m.add_argument("dirs", nargs="+", metavar="DIR", help="an output folder of 'deployer build' (holding one model) "
                   "or its dist/<model>/ folder")
    m.add_argument("--out", default="dist", help="where the merged dist/<model>/ goes (default: dist)")
    m.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)
    m.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    m.add_argument("--json", action="store_true", help=JSON_HELP)
    m.set_defaults(func=cmd_merge)

    be = sub.add_parser("bench", help="latency and size of every built artifact")
    be.add_argument("dist", help="dist/<model>/ folder, its manifest.json, or a model spec (built first if needed)")
    be.add_argument("--out", default="dist", help="output folder when given a model spec (default: dist)")
    be.add_argument("--runs", type=_positive(int), default=50)
    be.add_argument("--warmup", type=_positive(int, 0), default=10)
    be.add_argument("--timeout", type=_positive(float, 1), default=1800)
    be.set_defaults(func=cmd_bench)

    i = sub.add_parser("inspect", help="inputs, outputs and ops of an ONNX model (or a .tflite), and backend support per op")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.add_argument("--int8", action="store_true", help="also lint the graph for int8 quantization")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("data", help="synthesise, convert and describe datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic shapes dataset")
    s.add_argument("out")
    s.add_argument("--count", type=_positive(int), default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=("coco", "voc", "yolo", "all"), default="coco")
    s.set_defaults(func=cmd_data_synth)
    c = dsub.add_parser("convert", help="convert to COCO, VOC or YOLO (from those, Open Images CSV or an image folder)")
    c.add_argument("--from", choices=READ_FORMATS, help="source format (default: detect)")
    c.add_argument("--to", choices=("coco", "voc", "yolo"), required=True)
    c.add_argument("--split", help="convert this split only (default: every split)")
    c.add_argument("src")
    c.add_argument("dst")
    c.set_defaults(func=cmd_data_convert)
    n = dsub.add_parser("info", help="images, boxes per class and image sizes of a dataset")
    n.add_argument("src")
    n.add_argument("--from", choices=READ_FORMATS)
    n.add_argument("--split", help="describe this split only (default: every split, and each)")
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_data_info)
    return p


def _interrupt(signum, frame):
    """Ctrl-C or SIGTERM: stop the command (pipeline.build kills its workers, discards what
    was cut short and writes the manifest of what landed). Further signals are ignored while
    that cleanup, which takes a few seconds at most, runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning from deployer or a library in the parent: one plain line, not Python's
    file:line and source text."""
    print(f"deployer: warning: {message}", file=sys.stderr if file is None else file)


def _positive(kind: type, minimum: float = 1):
    """An argparse type: a number of `kind` >= `minimum` (finite), or a usage error naming it."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not (value >= minimum and value < float("inf")):
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum:g}, got {text!r}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"deployer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeployerError as exc:
        print(f"deployer: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("deployer: interrupted: running stages were stopped and unfinished targets discarded; what "
              "landed before is in the output folder and its manifest.json", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
