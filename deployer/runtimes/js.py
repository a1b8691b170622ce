"""JavaScript runners: ONNX Runtime Web (wasm) and TF.js (cpu), in Node and in headless
Chromium, driven through deployer/runtimes/js/run.mjs.

The runner contract (runtimes/base.py) converts inputs to the graph model's layout (NHWC
for TF.js graph models from onnx2tf) and matches outputs to the spec's names and shapes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from deployer.errors import StageError
from deployer.runtimes.base import Runner, Runtime, Tensor

JS_DIR = Path(__file__).resolve().parent / "js"
CHROMIUM = "/usr/bin/chromium"
NODE_TIMEOUT_S = 1800

RUNTIMES = tuple(
    # One wasm/cpu thread, fixed: these take no settings.
    Runtime(name, f"deployer.runtimes.js:{cls}", accepts=(fmt,), settings=(), family="node", summary=text)
    for name, cls, fmt, text in (
        ("ort-web-node", "OrtWebNode", "onnx", "ONNX Runtime Web (wasm) in Node"),
        ("ort-web-chromium", "OrtWebChromium", "onnx", "ONNX Runtime Web (wasm) in headless Chromium"),
        ("tfjs-node", "TfjsNode", "tfjs-graph-model", "TF.js (cpu backend) in Node"),
        ("tfjs-chromium", "TfjsChromium", "tfjs-graph-model", "TF.js (cpu backend) in headless Chromium")))


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

    def load(self) -> None:
        check_js_setup(self.where)
        self.settings = {"engine": self.engine, "where": self.where}

    def io(self):
        if self.engine == "tfjs":  # a graph model's signature: NHWC shapes when onnx2tf made it so
            sig = json.loads(Path(self.artifact).read_text()).get("signature", {})
            inputs = [Tensor(key, tuple(int(d["size"]) for d in info["tensorShape"]["dim"]))
                      for key, info in sig.get("inputs", {}).items()]
            if inputs:
                return inputs, None
        return [Tensor(i.name) for i in self.spec.inputs], None   # ONNX keeps the spec's input names

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer_many_impl([feed])[0]

    def infer_many_impl(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """The whole set goes to one Node process as .npy files (a process per image would
        cost more than the inference)."""
        with tempfile.TemporaryDirectory() as tmp:
            ins, outs = Path(tmp) / "in", Path(tmp) / "out"
            ins.mkdir()
            outs.mkdir()
            for name in feeds[0]:
                np.save(ins / f"{name}.npy", np.stack([f[name] for f in feeds]).astype(np.float32))
            cmd = ["node", str(JS_DIR / "run.mjs"), "--engine", self.engine, "--model", str(self.artifact),
                   "--inputs", str(ins), "--outputs", str(outs), "--where", self.where]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
                raise StageError(f"{self.engine} in {self.where} failed on {self.artifact}:\n{tail}")
            self.settings.update(json.loads((outs / "run.json").read_text()))
            produced = {p.stem: np.load(p) for p in outs.glob("*.npy")}
        return [{k: v[i] for k, v in produced.items()} for i in range(len(feeds))]


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
