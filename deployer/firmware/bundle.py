"""One archive per embedded target, ready for a firmware or an image build:
`dist/<model>/<model>-<target>-<version>.tar.gz` holding the target's artifacts and generated
sources, `deployer.json`, the Python sample, `labels.txt`, the target's part of the manifest,
a README saying how to build it in, and `SHA256SUMS` (checked with `sha256sum -c`).

Reproducible: the same files give the same archive bytes (sorted members, fixed mtime, owner
and modes, gzip without a name or time), and the manifest inside keeps only what the inputs
decide (no times, no absolute paths). Written to a temporary name and renamed: never half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

EPOCH = 315532800          # 1980-01-01, the fixed mtime of every member (what zip and Debian use)
VOLATILE = {"stages", "stage_seconds", "build_seconds", "seconds", "bench", "spec", "profile", "kept_previous_build"}


def stable(value):
    """`value` without what changes from one build of the same inputs to the next."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def target_manifest(manifest: dict, target: str) -> dict:
    """The manifest of one target: the build-wide record and that target's artifacts."""
    top = {k: v for k, v in manifest.items() if k not in ("artifacts", "targets", "int8_lint", "calibration_coverage")}
    # Paths on the building machine mean nothing in the bundle: file names only, and the
    # cached ONNX (whose key hashes deployer's own sources) is not in it.
    source = dict(top.get("source") or {})
    for key in ("path", "weights"):
        if source.get(key):
            source[key] = Path(str(source[key])).name
    if isinstance(top.get("onnx"), dict):
        top["onnx"] = {k: v for k, v in top["onnx"].items() if k != "path"}
    return stable({**top, "source": source, "targets": {target: manifest["targets"][target]},
                   "artifacts": [a for a in manifest["artifacts"] if a["target"] == target]})


def readme(model: str, target: str, entries: list[dict]) -> str:
    lines = [f"# {model} for {target}", "",
             "Built and verified by deployer: every artifact below ran in its runtime on the evaluation "
             "images and passed its parity thresholds (figures in `manifest.json`). Check the files "
             "first: `sha256sum -c SHA256SUMS`.", "", "| file | backend | precision | verified in |", "|---|---|---|---|"]
    for e in entries:
        runs = [r.get("runtime", "") for r in e.get("parity", {}).get("runs", [])] or [e.get("parity", {}).get("runtime", "")]
        lines.append(f"| {Path(e['path']).name} | {e['backend']} | {e['precision']} | {', '.join(runs)} |")
    micro = [e for e in entries if e.get("memory")]
    for e in micro:
        mem = e["memory"]
        models = mem["models"]
        main = models[0]["symbol"].removesuffix("_model")
        lines += ["", f"## TensorFlow Lite Micro: {Path(e['path']).name}", "",
                  f"Flash {mem['flash_bytes']} bytes, RAM (tensor arenas) {mem['arena_bytes']} bytes "
                  f"(measured minimum {mem['arena_min_bytes']}, plus {mem['arena_headroom']:.0%} headroom).", "",
                  f"1. Add {', '.join('`' + m['symbol'] + '.cc`' for m in models)} to the firmware's sources and the "
                  "folder to its include path (with TFLM's own headers and library: the `tflite-micro` "
                  "repository's `make -f tensorflow/lite/micro/tools/make/Makefile microlite`, or Zephyr's "
                  "`CONFIG_TENSORFLOW_LITE_MICRO=y` from the tflite-micro module; ESP-IDF: the esp-tflite-micro "
                  "component).",
                  "2. Register exactly the kernels used and make one interpreter per model:", "", "```cpp",
                  "#include <cstdint>", '#include "tensorflow/lite/micro/micro_interpreter.h"',
                  f'#include "{main}_op_resolver.h"']
        lines += [f'#include "{m["symbol"]}.h"' for m in models]
        lines += ["", f"static {main}_op_resolver resolver;"]
        for m in models:
            s = m["symbol"].removesuffix("_model")
            lines += [f"alignas(16) static uint8_t {s}_arena[{s}_arena_bytes];"]
        lines += ["", "bool setup() {", f"  if ({main}_register_ops(resolver) != kTfLiteOk) return false;"]
        for m in models:
            s = m["symbol"].removesuffix("_model")
            lines += [f"  static tflite::MicroInterpreter {s}_interpreter(tflite::GetModel({s}_model), resolver,",
                      f"                                                  {s}_arena, {s}_arena_bytes);",
                      f"  if ({s}_interpreter.AllocateTensors() != kTfLiteOk) return false;   // arena too small"]
        lines += ["  return true;", "}", "```", "",
                  f"3. Quantize the input with `{main}_input_scales[0]` and `{main}_input_zero_points[0]` "
                  f"(real = (q - zero_point) * scale), NHWC `{main}_input_dims[0]`, preprocessing as in "
                  "`deployer.json` (resize, scale, mean, std, channel order)."]
        if len(models) > 1:
            lines.append(f"4. Run `{main}`, dequantize its outputs (`{main}_output_scales`, `{main}_output_zero_points`) "
                         f"into the inputs of `{models[1]['symbol'].removesuffix('_model')}` (matched by "
                         "`_output_names` / `_input_names`) and run it: its outputs are the model's boxes and "
                         "scores before NMS, in network-input pixels.")
        lines.append("Labels are `labels.txt` and the `_labels` array of the model's header.")
    split = [e for e in entries if e.get("decode")]
    if split and not micro:
        lines += [""] + [f"`{Path(e['path']).name}` is the integer body: its outputs are the head's raw tensors, "
                         f"and `{Path(e['decode']).name}` (float) decodes them into boxes and scores; run it "
                         "on the body's dequantized outputs, matched by name (`infer.py` does)." for e in split]
    runtimes = ["`openvino` for .xml"] * any(e["path"].endswith(".xml") for e in entries) + \
        ["`ai-edge-litert` for .tflite"] * any(e["path"].endswith(".tflite") for e in entries) + \
        ["`tflite-micro` with `--tflm`, which uses the arena above"] * bool(micro)
    lines += ["", "## Trying it in Python", "",
              "`python infer.py <artifact> <image>...` runs an artifact on images with the preprocessing of "
              f"`deployer.json` (needs numpy, Pillow and the artifact's runtime: {', '.join(runtimes)}) and "
              "prints what it finds; `--out outputs.npz` keeps the outputs."]
    return "\n".join(lines) + "\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(model_dir: Path, target: str, manifest: dict, version: str) -> Path:
    """The bundle of `target` (built in dist/<model>/<target>/); its path."""
    model = manifest["model"]
    folder = model_dir / target
    root = f"{model}-{target}-{version}"
    entries = [a for a in manifest["artifacts"] if a["target"] == target and a["status"] == "built"]
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    files["manifest.json"] = (json.dumps(target_manifest(manifest, target), indent=2) + "\n").encode()
    labels = json.loads(files.get("deployer.json", b"{}")).get("labels", [])
    files["labels.txt"] = "".join(f"{label}\n" for label in labels).encode()
    files["README.md"] = readme(model, target, entries).encode()
    files["SHA256SUMS"] = "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(files.items())).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(root, tarfile.DIRTYPE, 0, 0o755))
        for name in sorted(files):
            data = files[name]
            tar.addfile(_member(f"{root}/{name}", tarfile.REGTYPE, len(data), 0o755 if name.endswith(".py") else 0o644),
                        io.BytesIO(data))
    out = model_dir / f"{root}.tar.gz"
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, out)
    return out


def _member(name: str, kind: bytes, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
