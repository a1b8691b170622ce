// Minimal .npy (version 1/2/3) parser and encoder for little-endian float32/int arrays, C order.
// No Node imports: the browser harness parses the very same way (run.mjs does the file I/O).

const DTYPES = { "<f4": Float32Array, "<i4": Int32Array, "|u1": Uint8Array, "|i1": Int8Array };
const latin1 = (bytes, a, b) => String.fromCharCode(...bytes.subarray(a, b));

// bytes: a Uint8Array holding a whole .npy file -> { data, shape, dtype }
export function parseNpy(bytes, what = "npy") {
  if (latin1(bytes, 1, 6) !== "NUMPY") throw new Error(`${what}: not a .npy file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = latin1(bytes, start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${what}: Fortran order is not supported`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map(s => s.trim()).filter(Boolean).map(Number);
  const Type = DTYPES[descr];
  if (!Type) throw new Error(`${what}: dtype ${descr} is not supported`);
  const offset = bytes.byteOffset + start + headerLen;
  return { data: new Type(bytes.buffer.slice(offset, bytes.byteOffset + bytes.byteLength)), shape, dtype: descr };
}

// -> Uint8Array of a .npy file holding `data` (Float32Array or Int32Array) with `shape`
export function encodeNpy(data, shape) {
  const descr = data instanceof Float32Array ? "<f4" : data instanceof Int32Array ? "<i4" : null;
  if (!descr) throw new Error("encodeNpy: only Float32Array and Int32Array");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ..."NUMPY"].map(c => (typeof c === "string" ? c.charCodeAt(0) : c)), 0);
  out[6] = 1; out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}
