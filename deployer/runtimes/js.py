"""JavaScript runners: ONNX Runtime Web (wasm) and TF.js (wasm, cpu as fallback), in Node and in headless
Chromium, driven through deployer/runtimes/js/run.mjs.

The runner contract (runtimes/base.py) converts inputs to the graph model's layout (NHWC
for TF.js graph models from onnx2tf) and matches outputs to the spec's names and shapes.
"""

from __future__ import annotations

import json
import os
import select
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
    Runtime(name, f"deployer.runtimes.js:{cls}", accepts=(fmt,), settings=(), family="node", spread=True,
            summary=text)
    for name, cls, fmt, text in (
        ("ort-web-node", "OrtWebNode", "onnx", "ONNX Runtime Web (wasm) in Node"),
        ("ort-web-chromium", "OrtWebChromium", "onnx", "ONNX Runtime Web (wasm) in headless Chromium"),
        ("tfjs-node", "TfjsNode", "tfjs-graph-model", "TF.js (wasm backend, cpu as fallback) in Node"),
        ("tfjs-chromium", "TfjsChromium", "tfjs-graph-model",
         "TF.js (wasm backend, cpu as fallback) in headless Chromium")))


def check_js_setup(where: str) -> None:
    if shutil.which("node") is None:
        raise StageError("Node.js is not installed: the web runtimes need node (>= 18) on PATH")
    if not (JS_DIR / "node_modules" / "onnxruntime-web").is_dir():
        raise StageError(f"{JS_DIR}/node_modules is missing: run 'make setup' (npm ci in {JS_DIR})")
    if where == "chromium" and not Path(CHROMIUM).exists():
        raise StageError(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")


class _NodeServer:
    """One `node server.mjs` per worker process, kept between stages: Node starts, the web
    runtimes initialise and Chromium launches once, not once per run. It lives in the
    worker's process group (a killed worker takes it along) and exits when the worker's
    end of its stdin closes."""

    def __init__(self):
        self.proc = None

    def request(self, payload: dict, what: str) -> dict:
        """One request; paths in it must be absolute (the server's working folder is its own)."""
        if self.proc is None or self.proc.poll() is not None:
            read_fd, write_fd = os.pipe()
            self.proc = subprocess.Popen(["node", str(JS_DIR / "server.mjs"), str(write_fd)], stdin=subprocess.PIPE,
                                         pass_fds=(write_fd,))
            os.close(write_fd)
            self.replies = os.fdopen(read_fd, "rb")
        try:
            self.proc.stdin.write((json.dumps(payload) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass   # reported below from the server's exit
        ready, _, _ = select.select([self.replies], [], [], NODE_TIMEOUT_S)
        line = self.replies.readline() if ready else b""
        if not line:
            if ready:
                code = self.proc.wait()
                self.proc = None
                raise StageError(f"{what}: the Node server exited with status {code} (its output is in this log)")
            self.proc.kill()
            self.proc = None
            raise StageError(f"{what}: no answer from Node within {NODE_TIMEOUT_S} s")
        reply = json.loads(line)
        if not reply["ok"]:
            tail = "\n".join(reply["error"].strip().splitlines()[:8])
            raise StageError(f"{what} failed:\n{tail}")
        return reply["value"]


_SERVER = _NodeServer()


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
        """The whole set goes to the Node server at once as .npy files (a request per image
        would cost more than the inference)."""
        with tempfile.TemporaryDirectory() as tmp:
            ins, outs = Path(tmp) / "in", Path(tmp) / "out"
            ins.mkdir()
            outs.mkdir()
            for name in feeds[0]:
                np.save(ins / f"{name}.npy", np.stack([f[name] for f in feeds]).astype(np.float32))
            self.settings.update(_SERVER.request(
                {"op": "run", "engine": self.engine, "model": str(Path(self.artifact).resolve()), "inputs": str(ins),
                 "outputs": str(outs), "where": self.where}, f"{self.engine} in {self.where} on {self.artifact}"))
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


def check_page(page_dir: str, screenshot: str) -> dict:
    """Worker stage: open the demo page in headless Chromium, run each model on each sample,
    save a screenshot; returns the detections the page drew (image coordinates)."""
    check_js_setup("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "page.json"
        _SERVER.request({"op": "page", "page": str(Path(page_dir).resolve()), "screenshot": str(Path(screenshot).resolve()),
                         "out": str(out)},
                        "the demo page check in Chromium")
        return json.loads(out.read_text())
