// The demo page: pick a model and an image, run it in the browser, draw the detections.
// window.deployerDemo exposes the same steps to tests (and to anyone scripting the page).
import { loadModel, runModel, useTfBackend } from "./engine.mjs";
import { decode } from "./heads.mjs";

const $ = id => document.getElementById(id);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"];
let config = null, current = null;

async function loadImage(src) {
  const img = new Image();
  img.src = src;
  await img.decode();
  return img;
}

// Letterbox or stretch to the network input, as the spec's preprocessing says.
function preprocess(img, pre, width, height, layout) {
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const ctx = c.getContext("2d");
  let sx = width / img.naturalWidth, sy = height / img.naturalHeight, px = 0, py = 0;
  if (pre.resize === "letterbox") {
    const r = Math.min(sx, sy);
    const nw = Math.max(1, Math.round(img.naturalWidth * r)), nh = Math.max(1, Math.round(img.naturalHeight * r));
    px = Math.floor((width - nw) / 2); py = Math.floor((height - nh) / 2);
    ctx.fillStyle = `rgb(${pre.pad_value},${pre.pad_value},${pre.pad_value})`;
    ctx.fillRect(0, 0, width, height);
    ctx.drawImage(img, px, py, nw, nh);
    sx = nw / img.naturalWidth; sy = nh / img.naturalHeight;
  } else {
    ctx.drawImage(img, 0, 0, width, height);
  }
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const data = new Float32Array(width * height * 3);
  const order = pre.channel_order === "BGR" ? [2, 1, 0] : [0, 1, 2];
  for (let i = 0; i < width * height; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = (rgba[i * 4 + order[ch]] / pre.scale - pre.mean[ch]) / pre.std[ch];
      data[layout === "NCHW" ? ch * width * height + i : i * 3 + ch] = v;
    }
  }
  return { data, transform: { sx, sy, px, py } };
}

async function selectModel(index) {
  const m = config.models[index];
  const lib = m.engine === "ort" ? window.ort : window.tf;
  let backend = "wasm";
  if (m.engine === "ort") { lib.env.wasm.wasmPaths = new URL("vendor/ort/", location.href).href; lib.env.wasm.numThreads = 1; }
  else {
    lib.wasm.setWasmPaths(new URL("vendor/tfwasm/", location.href).href);
    backend = (await useTfBackend(lib)).backend;
  }
  const handle = await loadModel(m.engine, lib, m.url);
  current = { index, model: m, lib, handle, backend };
  $("status").textContent = `${m.name} loaded`;
}

function draw(img, dets) {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  ctx.drawImage(img, 0, 0);
  ctx.lineWidth = 2; ctx.font = "12px sans-serif";
  $("dets").innerHTML = "";
  for (const d of dets) {
    const [x1, y1, x2, y2] = d.box, color = COLORS[d.label % COLORS.length];
    ctx.strokeStyle = color; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.name} ${d.score.toFixed(2)}`;
    ctx.fillStyle = color; ctx.fillRect(x1, Math.max(0, y1 - 14), ctx.measureText(text).width + 6, 14);
    ctx.fillStyle = "#fff"; ctx.fillText(text, x1 + 3, Math.max(11, y1 - 3));
    $("dets").insertAdjacentHTML("beforeend", `<tr><td>${d.name}</td><td>${d.score.toFixed(3)}</td><td>${d.box.map(v => v.toFixed(1)).join(", ")}</td></tr>`);
  }
}

async function detect(src) {
  const { model: m, lib, handle } = current;
  const img = await loadImage(src);
  const { data, transform } = preprocess(img, config.preprocess, m.width, m.height, m.layout);
  const t0 = performance.now();
  const out = await runModel(handle, lib, { [handle.inputNames[0]]: { data, shape: m.input_shape } });
  const ms = performance.now() - t0;
  if (handle.fallback) current.backend = `cpu (${handle.fallback})`;
  // A TF.js graph model may name its outputs after graph tensors (Identity:0...): they come in
  // the spec's order, so the spec's names are given by position where they are missing.
  const values = Object.values(out);
  // An artifact with NMS in its graph has its own outputs and head (end2end).
  const named = Object.fromEntries((m.outputs ?? config.outputs).map((n, i) => [n, out[n] ?? values[i]]));
  const dets = decode(m.head ?? config.head, named, { numClasses: config.labels.length, width: m.width, height: m.height }).map(d => ({
    ...d, name: config.labels[d.label],
    // Back to image pixels, clipped to the image.
    box: [Math.max(0, (d.box[0] - transform.px) / transform.sx), Math.max(0, (d.box[1] - transform.py) / transform.sy),
          Math.min(img.naturalWidth, (d.box[2] - transform.px) / transform.sx),
          Math.min(img.naturalHeight, (d.box[3] - transform.py) / transform.sy)],
  }));
  draw(img, dets);
  $("status").textContent = `${m.name}: ${dets.length} objects in ${ms.toFixed(1)} ms (${m.engine}, ${current.backend})`;
  return { detections: dets, ms, model: m.name };
}

async function main() {
  config = await (await fetch("models.json")).json();
  $("title").textContent = `deployer web demo: ${config.model}`;
  config.models.forEach((m, i) => $("model").insertAdjacentHTML("beforeend", `<option value="${i}">${m.name}</option>`));
  $("model").onchange = e => selectModel(Number(e.target.value));
  $("file").onchange = e => e.target.files[0] && detect(URL.createObjectURL(e.target.files[0]));
  for (const s of config.samples) {
    const b = document.createElement("button");
    b.textContent = s.split("/").pop();
    b.onclick = () => detect(s);
    $("samples").appendChild(b);
  }
  await selectModel(0);
  window.deployerDemo = { config, selectModel, detect, ready: true };
}

main().catch(e => { $("status").textContent = `error: ${e}`; window.deployerDemo = { error: String(e) }; });
