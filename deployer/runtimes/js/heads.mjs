// The demo page's head decoders: the JavaScript twins of deployer/heads/*.py, keyed by the
// same type names (tests/runtimes/test_heads_js.py runs both on the same arrays). Each takes
// the model's outputs {name: {data, shape}} for one image and the head's fields (models.json
// "head"), and returns [{box: [x1, y1, x2, y2] in input pixels, label, score}].

const PRE_NMS_FACTOR = 30;  // as parity/detection.py: candidates kept before NMS per max_detections

function iou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = Math.max(0, a[2] - a[0]) * Math.max(0, a[3] - a[1]) + Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// Multi-label candidates, pre-NMS top-k, class-wise greedy NMS: `boxes` (N, 4) xyxy, `scores` (N, C).
export function nmsDecode(boxes, scores, numClasses, head) {
  const n = boxes.length / 4;
  let cand = [];
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < numClasses; c++) {
      const s = scores[i * numClasses + c];
      if (s >= head.score_threshold) cand.push({ i, c, s });
    }
  }
  cand.sort((a, b) => b.s - a.s);  // stable: ties keep (anchor, class) order, as numpy's stable argsort
  cand = cand.slice(0, PRE_NMS_FACTOR * head.max_detections);
  const box = i => Array.from(boxes.subarray(i * 4, i * 4 + 4));
  const kept = [];
  for (const d of cand) {
    if (kept.length >= head.max_detections) break;
    const b = box(d.i);
    if (kept.every(k => k.label !== d.c || iou(k.box, b) <= head.iou_threshold)) kept.push({ box: b, label: d.c, score: d.s });
  }
  return kept;
}

function cxcywhToXyxy(rows, n) {
  const out = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    const [cx, cy, w, h] = [rows[i * 4], rows[i * 4 + 1], rows[i * 4 + 2], rows[i * 4 + 3]];
    out.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], i * 4);
  }
  return out;
}

function boxesScores(out, head, ctx) {
  const boxes = Float32Array.from(out[head.boxes].data);
  const n = boxes.length / 4;
  const xyxy = head.box_format === "cxcywh" ? cxcywhToXyxy(boxes, n) : boxes;
  return nmsDecode(xyxy, Float32Array.from(out[head.scores].data), ctx.numClasses, head);
}

function yolo(out, head, ctx) {
  const { data, shape } = out[head.output];
  const extra = head.layout === "v5" ? 5 : 4;
  // Orientation from the shape itself: a converter may hand the output back transposed.
  const channelsFirst = shape[1] === extra + ctx.numClasses && shape[2] !== extra + ctx.numClasses;
  const [rows, cols] = channelsFirst ? [shape[2], shape[1]] : [shape[1], shape[2]];
  const at = channelsFirst ? (r, c) => data[c * rows + r] : (r, c) => data[r * cols + c];
  const nc = cols - extra;
  const boxes = new Float32Array(rows * 4), scores = new Float32Array(rows * nc);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < 4; k++) boxes[r * 4 + k] = at(r, k);
    const obj = extra === 5 ? at(r, 4) : 1;
    for (let c = 0; c < nc; c++) scores[r * nc + c] = Math.fround(at(r, extra + c) * obj);
  }
  return nmsDecode(cxcywhToXyxy(boxes, rows), scores, nc, head);
}

const XFORM_CLIP = Math.log(1000 / 16);

function anchors(out, head, ctx) {
  const a = head.anchors_data, n = a.length / 4;
  const d = out[head.deltas].data, logits = out[head.logits].data;
  const width = logits.length / n;
  const [wx, wy, ww, wh] = head.box_coder_weights;
  const [ix, iy, iw, ih] = head.delta_order === "yxhw" ? [1, 0, 3, 2] : [0, 1, 2, 3];
  const boxes = new Float32Array(n * 4);
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);   // to the input, as parity's decoder
  for (let i = 0; i < n; i++) {
    const aw = a[i * 4 + 2] - a[i * 4], ah = a[i * 4 + 3] - a[i * 4 + 1];
    const acx = a[i * 4] + 0.5 * aw, acy = a[i * 4 + 1] + 0.5 * ah;
    let box;
    if (head.coder === "ltrb") {   // FCOS: distances from the centre in units of the anchor's size
      box = [acx - d[i * 4] * aw, acy - d[i * 4 + 1] * ah, acx + d[i * 4 + 2] * aw, acy + d[i * 4 + 3] * ah];
    } else {
      const cx = acx + d[i * 4 + ix] / wx * aw, cy = acy + d[i * 4 + iy] / wy * ah;
      const w = Math.exp(Math.min(d[i * 4 + iw] / ww, XFORM_CLIP)) * aw, h = Math.exp(Math.min(d[i * 4 + ih] / wh, XFORM_CLIP)) * ah;
      box = [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h];
    }
    boxes.set([clip(box[0], ctx.width), clip(box[1], ctx.height), clip(box[2], ctx.width), clip(box[3], ctx.height)], i * 4);
  }
  const ctr = head.centerness ? out[head.centerness].data : null;
  const bg = head.background, nc = width - (bg >= 0 ? 1 : 0);
  const scores = new Float32Array(n * nc);
  for (let i = 0; i < n; i++) {
    const row = Array.from(logits.subarray ? logits.subarray(i * width, (i + 1) * width) : logits.slice(i * width, (i + 1) * width));
    let p = row;
    if (head.activation === "sigmoid") p = row.map(x => 1 / (1 + Math.exp(-x)));
    else if (head.activation === "softmax") {
      const m = Math.max(...row), e = row.map(x => Math.exp(x - m)), s = e.reduce((u, v) => u + v, 0);
      p = e.map(x => x / s);
    }
    if (bg >= 0) p = p.filter((_, k) => k !== bg);
    if (ctr) { const c = 1 / (1 + Math.exp(-ctr[i])); p = p.map(x => Math.sqrt(x * c)); }   // FCOS
    scores.set(p, i * nc);
  }
  return nmsDecode(boxes, scores, nc, head);
}

function end2end(out, head, ctx) {
  const b = out[head.boxes].data, s = out[head.scores].data, c = out[head.classes].data;
  const k = Math.min(head.count ? Math.trunc(out[head.count].data[0]) : s.length, s.length);
  const dets = [];
  for (let i = 0; i < Math.max(0, k); i++) {
    const label = Math.round(c[i]) - head.class_offset;
    if (!(s[i] >= head.score_threshold) || label < 0) continue;
    let box = Array.from(b.slice(i * 4, i * 4 + 4));
    if (head.box_format === "yxyx") box = [box[1], box[0], box[3], box[2]];
    if (head.normalized) box = [box[0] * ctx.width, box[1] * ctx.height, box[2] * ctx.width, box[3] * ctx.height];
    dets.push({ box, label, score: s[i] });
  }
  dets.sort((u, v) => v.score - u.score);
  return dets.slice(0, head.max_detections);
}

export const DECODERS = { boxes_scores: boxesScores, yolo, anchors, end2end };

// outputs: {name: {data, shape}}; ctx: {numClasses, width, height} of the network input.
export function decode(head, outputs, ctx) {
  const decoder = DECODERS[head.type];
  if (!decoder) throw new Error(`the demo page has no decoder for head type '${head.type}'`);
  return decoder(outputs, head, ctx);
}
