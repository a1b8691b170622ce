// Load and run a deployer web artifact with ONNX Runtime Web or TF.js.

// TF.js computes on WebAssembly (about 10x the pure-JavaScript cpu backend); where wasm cannot
// start, the cpu backend runs instead and the reason is returned (it goes into the manifest).
export async function useTfBackend(tf, preferred = "wasm") {
  let reason = "";
  try {
    if (await tf.setBackend(preferred)) {
      await tf.ready();
      return { backend: preferred };
    }
    reason = `setBackend('${preferred}') returned false`;
  } catch (e) {
    reason = String(e);
  }
  await tf.setBackend("cpu");
  return { backend: "cpu", fallback: `${preferred} unavailable: ${reason}` };
}
// Shared by the Node runner (run.mjs) and the demo page (the browser), so the browser
// parity run executes the very code the page uses. `lib` is the `ort` or `tf` namespace.

export async function loadModel(engine, lib, source) {
  if (engine === "ort") {
    // source: URL or Uint8Array of the .onnx / .ort file
    const session = await lib.InferenceSession.create(source, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    return { engine, session, inputNames: session.inputNames, outputNames: session.outputNames };
  }
  if (engine === "tfjs") {
    // source: URL of model.json, or an tf.io IOHandler
    const model = await lib.loadGraphModel(source);
    const signature = model.signature || {};
    const outputs = signature.outputs ? Object.entries(signature.outputs) : model.outputs.map(o => [o.name, o]);
    const inputs = signature.inputs ? Object.entries(signature.inputs) : model.inputs.map(i => [i.name, i]);
    return {
      engine, model, lib, source,
      inputNames: inputs.map(([key]) => key),
      inputNodes: inputs.map(([, info]) => info.name),
      inputShapes: inputs.map(([, info]) => (info.tensorShape ? info.tensorShape.dim.map(d => Number(d.size)) : info.shape)),
      outputNames: outputs.map(([key]) => key),
      outputNodes: outputs.map(([, info]) => info.name),
    };
  }
  throw new Error(`unknown engine ${engine}`);
}

// Free what a loaded model holds (a long-lived process runs many of them).
export async function disposeModel(handle) {
  if (handle.engine === "ort") await handle.session.release();
  else handle.model.dispose();
}

// inputs: {name: {data: Float32Array, shape: number[]}} -> {name: {data, shape}}
// A kernel the TF.js wasm backend lacks (e.g. a FusedConv2D with a scalar bias) fails the run:
// the cpu backend runs the model instead, and `handle.fallback` says why (it goes into the
// manifest, or the demo page's status line). Every caller (Node, the Chromium harness, the
// page) gets the same behaviour from here.
export async function runModel(handle, lib, inputs) {
  if (handle.engine === "tfjs" && lib.getBackend() === "wasm") {
    try {
      return await execute(handle, lib, inputs);
    } catch (e) {
      handle.model.dispose();
      await lib.setBackend("cpu");
      Object.assign(handle, await loadModel("tfjs", lib, handle.source));
      handle.fallback = `wasm failed on this model: ${String(e).split("\n")[0]}`;
    }
  }
  return execute(handle, lib, inputs);
}

async function execute(handle, lib, inputs) {
  if (handle.engine === "ort") {
    const feeds = {};
    for (const [name, t] of Object.entries(inputs)) feeds[name] = new lib.Tensor("float32", t.data, t.shape);
    const results = await handle.session.run(feeds);
    const out = {};
    for (const name of handle.outputNames) out[name] = { data: results[name].data, shape: results[name].dims.slice() };
    return out;
  }
  const feed = {};
  handle.inputNames.forEach((name, k) => {
    const t = inputs[name];
    feed[handle.inputNodes[k]] = lib.tensor(t.data, t.shape, "float32");
  });
  const tensors = await handle.model.executeAsync(feed, handle.outputNodes);
  const list = Array.isArray(tensors) ? tensors : [tensors];
  // An output the converter folded to a constant is the model's own weight tensor: disposing
  // it would break the next run ("Tensor is disposed").
  const kept = new Set(Object.values(handle.model.weights).flat().map(t => t.dataId));
  const out = {};
  for (let k = 0; k < list.length; k++) {
    out[handle.outputNames[k]] = { data: await list[k].data(), shape: list[k].shape.slice() };
    if (!kept.has(list[k].dataId)) list[k].dispose();
  }
  Object.values(feed).forEach(t => t.dispose());
  return out;
}

