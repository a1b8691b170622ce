// Run a deployer web artifact over .npy inputs in Node or in headless Chromium; write .npy outputs.
//   node run.mjs --engine ort|tfjs --model FILE --inputs DIR --outputs DIR [--where node|chromium]
// Inputs: DIR/<input>.npy shaped (n, ...) with each sample as the model takes it; outputs likewise.
import { createServer } from "node:http";
import { readFileSync, readdirSync, writeFileSync, existsSync, statSync } from "node:fs";
import { dirname, join, resolve, extname } from "node:path";
import { fileURLToPath } from "node:url";
import { readNpy, writeNpy } from "./npy.mjs";
import { loadModel, runModel } from "./engine.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const parseArgs = argv => Object.fromEntries(argv.reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));

function readInputs(dir) {
  const inputs = {};
  for (const f of readdirSync(dir).filter(f => f.endsWith(".npy"))) inputs[f.slice(0, -4)] = readNpy(join(dir, f));
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
    writeNpy(join(dir, `${name}.npy`), flat, [parts.length, ...shape]);
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

async function runInNode(engine, modelPath, inputs) {
  let lib, source;
  if (engine === "ort") {
    lib = await import("onnxruntime-web");
    lib.env.wasm.numThreads = 1;
    source = new Uint8Array(readFileSync(modelPath));
  } else {
    lib = await import("@tensorflow/tfjs");
    await lib.setBackend("cpu");
    source = tfjsFileHandler(modelPath);
  }
  const handle = await loadModel(engine, lib, source);
  const n = Object.values(inputs)[0].shape[0];
  const store = {};
  const t0 = Date.now();
  for (let k = 0; k < n; k++) {
    const feed = Object.fromEntries(Object.entries(inputs).map(([name, npy]) => [name, sample(npy, k)]));
    const out = await runModel(handle, lib, feed);
    for (const [name, t] of Object.entries(out)) collect(store, name, t);
  }
  const version = engine === "ort" ? lib.env.versions?.web : lib.version?.tfjs;
  return { store, settings: { where: "node", node: process.version, engine, backend: engine === "ort" ? "wasm" : "cpu",
                              version, threads: 1, seconds: (Date.now() - t0) / 1000 } };
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
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.DEPLOYER_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export const VENDOR = { "/vendor/ort/": join(HERE, "node_modules/onnxruntime-web/dist"),
                        "/vendor/tf/": join(HERE, "node_modules/@tensorflow/tfjs/dist") };

async function runInChromium(engine, modelPath, inputs) {
  const server = await serve({ "/": HERE, ...VENDOR, "/model/": dirname(modelPath) });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.address().port}/harness.html`);
    await page.waitForFunction(() => window.harnessReady === true, null, { timeout: 30000 }).catch(() => {
      throw new Error(`harness did not start: ${errors.join("; ")}`);
    });
    const info = await page.evaluate(([e, u]) => window.harness.load(e, u), [engine, `/model/${modelPath.split("/").pop()}`]);
    const n = Object.values(inputs)[0].shape[0];
    const store = {};
    let ms = 0;
    for (let k = 0; k < n; k++) {
      const feed = {};
      for (const [name, npy] of Object.entries(inputs)) {
        const s = sample(npy, k);
        feed[name] = { b64: Buffer.from(s.data.buffer, s.data.byteOffset, s.data.byteLength).toString("base64"), shape: s.shape };
      }
      const result = await page.evaluate(f => window.harness.run(f), feed);
      ms += result.ms;
      for (const [name, t] of Object.entries(result.outputs)) {
        const b = Buffer.from(t.b64, "base64");
        collect(store, name, { data: new Float32Array(b.buffer, b.byteOffset, b.length / 4), shape: t.shape });
      }
    }
    return { store, settings: { where: "chromium", browser: browser.version(), engine, backend: engine === "ort" ? "wasm" : "cpu",
                                version: info.version, threads: 1, inference_ms_total: ms } };
  } finally {
    await browser.close();
    server.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = parseArgs(process.argv.slice(2));
  const inputs = readInputs(args.inputs);
  const run = (args.where || "node") === "chromium" ? runInChromium : runInNode;
  const { store, settings } = await run(args.engine, resolve(args.model), inputs);
  writeOutputs(args.outputs, store);
  writeFileSync(join(args.outputs, "run.json"), JSON.stringify(settings));
}
