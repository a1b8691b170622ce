// Run a deployer web artifact over .npy inputs in Node or in headless Chromium; write .npy outputs.
//   node run.mjs --engine ort|tfjs --model FILE --inputs DIR --outputs DIR [--where node|chromium]
// Inputs: DIR/<input>.npy shaped (n, ...) with each sample as the model takes it; outputs likewise.
// server.mjs runs the same `runArtifact` for many requests in one process and one browser.
import { createServer } from "node:http";
import { readFileSync, readdirSync, writeFileSync, existsSync, statSync } from "node:fs";
import { dirname, join, resolve, extname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseNpy, encodeNpy } from "./npy.mjs";
import { disposeModel, loadModel, runModel, useTfBackend } from "./engine.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const parseArgs = argv => Object.fromEntries(argv.reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));

function readInputs(dir) {
  const inputs = {};
  for (const f of readdirSync(dir).filter(f => f.endsWith(".npy"))) {
    inputs[f.slice(0, -4)] = parseNpy(new Uint8Array(readFileSync(join(dir, f))), join(dir, f));
  }
  return inputs;
}

function sample(npy, k) {
  const [, ...shape] = npy.shape;
  const size = shape.reduce((a, b) => a * b, 1);
  return { data: npy.data.subarray(k * size, (k + 1) * size), shape };
}

function collect(store, name, t) {
  (store[name] ||= { parts: [], shape: t.shape }).parts.push(Float32Array.from(t.data));
}

function writeOutputs(dir, store) {
  for (const [name, { parts, shape }] of Object.entries(store)) {
    const flat = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) { flat.set(p, o); o += p.length; }
    writeFileSync(join(dir, `${name}.npy`), encodeNpy(flat, [parts.length, ...shape]));
  }
}

// A tf.io handler reading model.json and its shards from disk (Node has no fetch of file://).
function tfjsFileHandler(path) {
  return {
    async load() {
      const json = JSON.parse(readFileSync(path, "utf8"));
      const specs = [], buffers = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push(readFileSync(join(dirname(path), p)));
      }
      const all = Buffer.concat(buffers);
      return { modelTopology: json.modelTopology, format: json.format, generatedBy: json.generatedBy,
               convertedBy: json.convertedBy, signature: json.signature, userDefinedMetadata: json.userDefinedMetadata,
               weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length) };
    },
  };
}

async function runAll(handle, lib, inputs) {
  const n = Object.values(inputs)[0].shape[0];
  const store = {};
  try {
    for (let k = 0; k < n; k++) {
      const feed = Object.fromEntries(Object.entries(inputs).map(([name, npy]) => [name, sample(npy, k)]));
      const out = await runModel(handle, lib, feed);
      for (const [name, t] of Object.entries(out)) collect(store, name, t);
    }
  } finally {
    await disposeModel(handle);
  }
  return store;
}

async function runInNode(engine, modelPath, inputs) {
  let lib, source, chosen = { backend: "wasm" };
  if (engine === "ort") {
    lib = await import("onnxruntime-web");
    lib.env.wasm.numThreads = 1;
    source = new Uint8Array(readFileSync(modelPath));
  } else {
    lib = await import("@tensorflow/tfjs");
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(join(HERE, "node_modules/@tensorflow/tfjs-backend-wasm/dist/"));
    chosen = await useTfBackend(lib);
    source = tfjsFileHandler(modelPath);
  }
  const t0 = Date.now();
  const handle = await loadModel(engine, lib, source);
  const store = await runAll(handle, lib, inputs);
  if (handle.fallback) chosen = { backend: "cpu", fallback: handle.fallback };
  const version = engine === "ort" ? lib.env.versions?.web : lib.version?.tfjs;
  return { store, settings: { where: "node", node: process.version, engine, ...chosen, version, threads: 1,
                              seconds: (Date.now() - t0) / 1000 } };
}

const MIME = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
               ".wasm": "application/wasm", ".bin": "application/octet-stream", ".onnx": "application/octet-stream",
               ".ort": "application/octet-stream", ".png": "image/png", ".jpg": "image/jpeg", ".css": "text/css" };

// Serves the harness, the runtime libraries and the artifact's folder on 127.0.0.1 only.
export function serve(routes) {
  const server = createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(routes).sort((a, b) => b.length - a.length).find(p => url.startsWith(p));
    const file = prefix !== undefined ? resolve(routes[prefix], "." + url.slice(prefix.length - 1)) : null;
    if (!file || !file.startsWith(resolve(routes[prefix])) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404); res.end(); return;
    }
    res.writeHead(200, { "Content-Type": MIME[extname(file)] || "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise(ok => server.listen(0, "127.0.0.1", () => ok(server)));
}

export async function launchChromium() {
  // One browser per process: a server (server.mjs) reuses it for every run.
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.DEPLOYER_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export const VENDOR = { "/vendor/ort/": join(HERE, "node_modules/onnxruntime-web/dist"),
                        "/vendor/tf/": join(HERE, "node_modules/@tensorflow/tfjs/dist"),
                        "/vendor/tfwasm/": join(HERE, "node_modules/@tensorflow/tfjs-backend-wasm/dist") };

// The page fetches the .npy inputs from this server and runs every sample itself: one call
// into the page, not a round trip per image.
async function runInChromium(engine, modelPath, inputsDir, browser) {
  const server = await serve({ "/": HERE, ...VENDOR, "/model/": dirname(modelPath), "/inputs/": inputsDir });
  const page = await browser.newPage();
  try {
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.address().port}/harness.html`);
    await page.waitForFunction(() => window.harnessReady === true, null, { timeout: 30000 }).catch(() => {
      throw new Error(`harness did not start: ${errors.join("; ")}`);
    });
    const info = await page.evaluate(([e, u]) => window.harness.load(e, u), [engine, `/model/${modelPath.split("/").pop()}`]);
    const names = readdirSync(inputsDir).filter(f => f.endsWith(".npy")).map(f => f.slice(0, -4));
    const result = await page.evaluate(n => window.harness.runAll(n), names).catch(e => {
      throw new Error(`${e.message}; ${errors.join("; ")}`);
    });
    const store = {};
    for (const [name, t] of Object.entries(result.outputs)) {
      const b = Buffer.from(t.b64, "base64");
      const all = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
      const size = t.shape.reduce((a, c) => a * c, 1);
      store[name] = { shape: t.shape, parts: Array.from({ length: result.count }, (_, k) => all.subarray(k * size, (k + 1) * size)) };
    }
    const backend = result.fallback ? { backend: "cpu", fallback: result.fallback } : info.backend;
    return { store, settings: { where: "chromium", browser: browser.version(), engine, ...backend,
                                version: info.version, threads: 1, inference_ms_total: result.ms } };
  } finally {
    await page.close();
    server.close();
  }
}

// One run: the artifact over DIR/<input>.npy, outputs and run.json into the outputs folder.
// `browser()` gives the Chromium to use (launched on first need by the caller).
export async function runArtifact({ engine, model, inputs, outputs, where }, browser) {
  const { store, settings } = (where || "node") === "chromium"
    ? await runInChromium(engine, resolve(model), resolve(inputs), await browser())
    : await runInNode(engine, resolve(model), readInputs(inputs));
  writeOutputs(outputs, store);
  writeFileSync(join(outputs, "run.json"), JSON.stringify(settings));
  return settings;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let chromium = null;
  try {
    await runArtifact(parseArgs(process.argv.slice(2)), async () => (chromium ||= await launchChromium()));
  } finally {
    if (chromium) await chromium.close();
  }
}
