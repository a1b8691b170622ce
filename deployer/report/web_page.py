"""The static web demo page written next to every web build (dist/<model>/web/).

It needs no bundler: index.html, app.mjs, engine.mjs (the same module the Chromium
parity run uses) and heads.mjs (the head decoders, twins of deployer/heads/), the runtimes vendored under vendor/, a few sample images and
models.json describing each artifact. Serve the folder with any static server
(e.g. `python -m http.server -d dist/shapes/web`) and open it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deployer import backends
from deployer.errors import StageError
from deployer.graph_nms import derived_for
from deployer.heads import registry as heads
from deployer.spec import ModelSpec

JS_DIR = Path(__file__).resolve().parent.parent / "runtimes" / "js"
VENDOR = {
    "vendor/ort": (JS_DIR / "node_modules/onnxruntime-web/dist",
                   ["ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"]),
    "vendor/tf": (JS_DIR / "node_modules/@tensorflow/tfjs/dist", ["tf.min.js"]),
    "vendor/tfwasm": (JS_DIR / "node_modules/@tensorflow/tfjs-backend-wasm/dist",
                      ["tf-backend-wasm.min.js", "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm",
                       "tfjs-backend-wasm-threaded-simd.wasm"]),
}


def _model_entry(entry: dict, spec: ModelSpec, staging: Path) -> dict | None:
    if entry["status"] != "built":
        return None
    engine = backends.get(entry["backend"]).web_engine
    if engine is None:
        return None
    inp = spec.inputs[0]
    url = str(Path(entry["path"]).relative_to(entry["target"]))
    shape, layout = list(inp.shape), inp.layout
    if engine == "tfjs":
        sig = json.loads((staging / url).read_text()).get("signature", {}).get("inputs", {})
        dims = [int(d["size"]) for d in next(iter(sig.values()))["tensorShape"]["dim"]] if sig else shape
        if dims != shape:  # onnx2tf made it NHWC
            shape, layout = dims, "NHWC"
    name = f"{entry['backend']} {entry['precision']}" + (f" {entry['variant']}" if entry.get("variant") else "")
    model = {"name": name, "engine": engine, "url": url, "input_shape": shape, "layout": layout,
             "width": inp.width, "height": inp.height}
    if entry.get("nms") == "graph":   # finished detections: its own outputs and head
        derived = derived_for(spec, entry["backend"])
        model.update({"outputs": derived.outputs, "head": derived.head.to_dict()})
    return model


def write_page(staging: Path, spec: ModelSpec, entries: list[dict], samples: list[Path]) -> list[str]:
    """Write the page into a web target's staging folder; returns the sample image paths it uses."""
    models = [m for m in (_model_entry(e, spec, staging) for e in entries) if m]
    if not models:
        return []
    for sub, (src, names) in VENDOR.items():
        if not src.is_dir():
            raise StageError(f"{src} is missing: run 'make setup' (npm ci in {JS_DIR}) to vendor the web runtimes")
        (staging / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copyfile(src / n, staging / sub / n)
    for f in ("index.html", "app.mjs"):
        shutil.copyfile(JS_DIR / "page" / f, staging / f)
    for f in ("engine.mjs", "heads.mjs"):
        shutil.copyfile(JS_DIR / f, staging / f)
    (staging / "samples").mkdir(exist_ok=True)
    sample_urls = []
    for s in samples:
        shutil.copyfile(s, staging / "samples" / s.name)
        sample_urls.append(f"samples/{s.name}")
    d = spec.to_dict()
    head_type = heads()[spec.head.type]
    head = {**d["head"], **(head_type.page_data(spec.head.params) if head_type.page_data else {})}
    (staging / "models.json").write_text(json.dumps({
        "model": spec.name, "labels": spec.labels, "outputs": spec.outputs, "preprocess": d["preprocess"], "head": head,
        "samples": sample_urls, "models": models}, indent=2))
    return sample_urls
