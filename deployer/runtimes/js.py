"""JavaScript runners: ONNX Runtime Web (wasm) and TF.js (cpu), in Node and in headless
Chromium, driven through deployer/runtimes/js/run.mjs.

The whole input set goes to one Node process as .npy files (a process per image would
cost more than the inference); inputs are given in the source layout and converted here
(NHWC for TF.js graph models), outputs are matched to the spec's names and shapes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from deployer.errors import StageError
from deployer.runtimes.base import Runner, from_layout, to_layout
from deployer.runtimes.litert import match_names

JS_DIR = Path(__file__).resolve().parent / "js"
CHROMIUM = "/usr/bin/chromium"


def check_js_setup(where: str) -> None:
    if shutil.which("node") is None:
        raise StageError("Node.js is not installed: the web runtimes need node (>= 18) on PATH")
    if not (JS_DIR / "node_modules" / "onnxruntime-web").is_dir():
        raise StageError(f"{JS_DIR}/node_modules is missing: run 'make setup' (npm ci in {JS_DIR})")
    if where == "chromium" and not Path(CHROMIUM).exists():
        raise StageError(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")


class JSRunner(Runner):
    engine = "ort"
    where = "node"

    def __enter__(self):
        check_js_setup(self.where)
        self.input_shapes = {}
        if self.engine == "tfjs":
            sig = json.loads(Path(self.artifact).read_text()).get("signature", {})
            for key, info in sig.get("inputs", {}).items():
                self.input_shapes[key] = [int(d["size"]) for d in info["tensorShape"]["dim"]]
        self.expected = self.options.get("expected_outputs", {})
        self.settings = {"engine": self.engine, "where": self.where}
        return self

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.infer_all({k: v[None] for k, v in feed.items()}).items()}

    def infer_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run every sample of (n, *sample_shape) inputs; return (n, *output_shape) outputs."""
        with tempfile.TemporaryDirectory() as tmp:
            ins, outs = Path(tmp) / "in", Path(tmp) / "out"
            ins.mkdir()
            outs.mkdir()
            names = match_names(list(feeds), list(self.input_shapes), f"{self.artifact} inputs") \
                if self.input_shapes else {k: k for k in feeds}
            for name, x in feeds.items():
                key = names[name]
                if key in self.input_shapes:
                    x = np.stack([to_layout(s, self.input_shapes[key], f"{self.artifact} input '{name}'") for s in x])
                np.save(ins / f"{key}.npy", np.ascontiguousarray(x, dtype=np.float32))
            cmd = ["node", str(JS_DIR / "run.mjs"), "--engine", self.engine, "--model", str(self.artifact),
                   "--inputs", str(ins), "--outputs", str(outs), "--where", self.where]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=float(self.options.get("timeout", 1800)))
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
                raise StageError(f"{self.engine} in {self.where} failed on {self.artifact}:\n{tail}")
            self.settings.update(json.loads((outs / "run.json").read_text()))
            produced = {p.stem: np.load(p) for p in outs.glob("*.npy")}
        mapping = match_names(list(self.spec.outputs), list(produced), f"{self.artifact} outputs")
        result = {}
        for name, key in mapping.items():
            y = produced[key]
            expected = self.expected.get(name)
            result[name] = np.stack([from_layout(s, expected, f"{self.artifact} output '{name}'") for s in y])
        return result


class OrtWebNode(JSRunner):
    runtime, engine, where = "ort-web-node", "ort", "node"


class OrtWebChromium(JSRunner):
    runtime, engine, where = "ort-web-chromium", "ort", "chromium"


class TfjsNode(JSRunner):
    runtime, engine, where = "tfjs-node", "tfjs", "node"


class TfjsChromium(JSRunner):
    runtime, engine, where = "tfjs-chromium", "tfjs", "chromium"


def check_page(page_dir: str, screenshot: str, timeout: float = 900) -> dict:
    """Worker stage: open the demo page in headless Chromium, run each model on each sample,
    save a screenshot; returns the detections the page drew (image coordinates)."""
    check_js_setup("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "page.json"
        proc = subprocess.run(["node", str(JS_DIR / "page_check.mjs"), "--page", page_dir, "--screenshot", screenshot,
                               "--out", str(out)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise StageError(f"demo page check failed in Chromium:\n{tail}")
        return json.loads(out.read_text())
