// Minimal .npy (version 1/2/3) reader and writer for little-endian float32/int arrays, C order.
import { readFileSync, writeFileSync } from "node:fs";

const DTYPES = { "<f4": Float32Array, "<i4": Int32Array, "|u1": Uint8Array, "|i1": Int8Array };

export function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.toString("latin1", 1, 6) !== "NUMPY") throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString("latin1", start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order is not supported`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map(s => s.trim()).filter(Boolean).map(Number);
  const Type = DTYPES[descr];
  if (!Type) throw new Error(`${path}: dtype ${descr} is not supported`);
  const offset = start + headerLen;
  const copy = buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + buf.length);
  return { data: new Type(copy), shape, dtype: descr };
}

export function writeNpy(path, data, shape) {
  const descr = data instanceof Float32Array ? "<f4" : data instanceof Int32Array ? "<i4" : null;
  if (!descr) throw new Error("writeNpy: only Float32Array and Int32Array");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const head = Buffer.alloc(10);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, "latin1"), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}
