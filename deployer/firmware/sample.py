"""Run a deployer artifact on images, the way an application on an embedded Linux board does.

    python infer.py ARTIFACT IMAGE [IMAGE ...] [--out outputs.npz]

Standalone: needs numpy, Pillow and the artifact's runtime (`openvino` for .xml, `ai-edge-litert`
for .tflite, `tflite-micro` with --tflm). The preprocessing, labels and output shapes come from
the deployer.json beside this file; an artifact listed there with a `decode` file (a
full-integer TFLite whose outputs are the head's tensors before decoding) runs that float
decoding after it. Prints each output's shape and range and, for a boxes + scores head, the
detections (after class-wise NMS); --out keeps the outputs, stacked per image, in the model's layout.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


def preprocess(path, shape, layout, pre):
    """An image file -> the network input (1, C, H, W) or (1, H, W, C), float32."""
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w0, h0 = image.size
    if pre["resize"] == "stretch":
        pixels = np.asarray(image.resize((width, height), Image.BILINEAR))
    else:   # letterbox: aspect ratio kept, centred on a pad_value canvas
        r = min(width / w0, height / h0)
        nw, nh = max(1, round(w0 * r)), max(1, round(h0 * r))
        px, py = (width - nw) // 2, (height - nh) // 2
        pixels = np.full((height, width, 3), int(round(pre["pad_value"])), np.uint8)
        pixels[py:py + nh, px:px + nw] = np.asarray(image.resize((nw, nh), Image.BILINEAR))
    x = pixels.astype(np.float32)
    if pre["channel_order"] == "BGR":
        x = x[..., ::-1]
    x = (x / pre["scale"] - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    x = x[None].astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NCHW" else x


class OpenVINO:
    def __init__(self, path):
        import openvino as ov

        self.model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.names = [o.get_any_name() for o in self.model.outputs]

    def __call__(self, x):
        result = self.model(x)
        return {name: np.asarray(result[o]) for name, o in zip(self.names, self.model.outputs)}


class LiteRT:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.runner = Interpreter(model_path=str(path)).get_signature_runner()
        self.inputs, self.outputs = self.runner.get_input_details(), self.runner.get_output_details()

    def __call__(self, *xs):
        feed = {k: _quantize(x, d) for (k, d), x in zip(self.inputs.items(), xs)}
        return {k: _dequantize(np.asarray(v), self.outputs[k]) for k, v in self.runner(**feed).items()}


class Micro:
    """TensorFlow Lite Micro, with the tensor arena the firmware declares."""

    def __init__(self, path, arena):
        from tflite_micro.python.tflite_micro import runtime

        try:
            self.interpreter = runtime.Interpreter.from_file(str(path), arena_size=arena)
        except (RuntimeError, ValueError) as e:
            # TFLM prints the op it has no kernel for just before; say what to do about it.
            sys.exit(f"{path.name}: TensorFlow Lite Micro cannot run it ({e}): it runs only the ops TFLM has "
                     "kernels for, in the arena declared for it; use the mcu target's bundle for --tflm, "
                     "or run this file without --tflm")
        self.inputs, self.outputs = _io_names(path)

    def __call__(self, *xs):
        it, out = self.interpreter, {}
        for i, x in enumerate(xs):
            d = it.get_input_details(i)
            it.set_input(_quantize(x, {"dtype": d["dtype"], "quantization": _q(d)}), i)
        it.invoke()
        for i in range(len(self.outputs)):
            d = it.get_output_details(i)
            out[self.outputs[i]] = _dequantize(np.array(it.get_output(i)), {"quantization": _q(d)})
        return out


def _q(d):
    q = d["quantization_parameters"]
    return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) == 1 else (0.0, 0)


def _quantize(x, d):
    scale, zero = d["quantization"]
    if not np.issubdtype(np.dtype(d["dtype"]), np.integer) or not scale:
        return x.astype(np.float32)
    info = np.iinfo(d["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(d["dtype"])


def _dequantize(y, d):
    scale, zero = d["quantization"]
    return ((y.astype(np.float32) - zero) * scale) if np.issubdtype(y.dtype, np.integer) and scale else y


def _layout(y, shape):
    """An NHWC output back to the source model's NCHW shape when that is what it is."""
    if shape and y.ndim == 4 and tuple(y.shape) != tuple(shape) and y.transpose(0, 3, 1, 2).shape == tuple(shape):
        return y.transpose(0, 3, 1, 2)
    return y


def nms(boxes, scores, threshold, iou_threshold):
    """Greedy class-wise NMS over xyxy boxes: [(box index, class)], best first."""
    kept = []
    for c in range(scores.shape[1]):
        order = [i for i in np.argsort(-scores[:, c]) if scores[i, c] >= threshold]
        while order:
            i, order = order[0], order[1:]
            kept.append((i, c))
            x1 = np.maximum(boxes[i, 0], boxes[order, 0])
            y1 = np.maximum(boxes[i, 1], boxes[order, 1])
            x2 = np.minimum(boxes[i, 2], boxes[order, 2])
            y2 = np.minimum(boxes[i, 3], boxes[order, 3])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])   # noqa: E731
            iou = inter / np.maximum(area(boxes[i]) + area(boxes[order]) - inter, 1e-9)
            order = [j for j, o in zip(order, iou) if o <= iou_threshold]
    return sorted(kept, key=lambda k: -scores[k[0], k[1]])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--out", help="write the outputs (stacked per image) to this .npz")
    ap.add_argument("--tflm", action="store_true", help="run a .tflite in TensorFlow Lite Micro")
    args = ap.parse_args(argv)
    info = json.loads((HERE / "deployer.json").read_text())
    artifact = Path(args.artifact)
    entry = next((a for a in info["artifacts"] if Path(a["path"]).name == artifact.name), None)
    if entry is None:
        sys.exit(f"{artifact}: not an artifact of {HERE / 'deployer.json'} "
                 f"({', '.join(Path(a['path']).name for a in info['artifacts'])})")
    spec_in = info["inputs"][0]
    layout = "NCHW" if artifact.suffix == ".xml" and spec_in["layout"] == "NCHW" else "NHWC"
    shape = spec_in["shape"] if layout == spec_in["layout"] else (
        [spec_in["shape"][i] for i in ((0, 2, 3, 1) if layout == "NHWC" else (0, 3, 1, 2))])
    memory = {m["file"]: m for m in entry.get("memory", {}).get("models", [])}

    def load(path):
        if path.suffix == ".xml":
            return OpenVINO(path)
        if args.tflm:
            return Micro(path, memory.get(path.name, {}).get("arena_bytes", 8 << 20))
        return LiteRT(path)

    run = load(artifact)
    decode = load(artifact.with_name(Path(entry["decode"]).name)) if entry.get("decode") else None
    stacked = {}
    for image in args.images:
        out = run(preprocess(image, shape, layout, info["preprocess"]))
        if decode is not None:   # its inputs are the model's outputs, by name
            out = decode(*[out[n] for n in decode.inputs])
        out = {k: _layout(v, info.get("outputs", {}).get(k)) for k, v in out.items()}
        for k, v in out.items():
            stacked.setdefault(k, []).append(v)
        print(f"{image}: " + ", ".join(f"{k} {list(v.shape)} [{v.min():.3g}, {v.max():.3g}]" for k, v in out.items()))
        head = info["head"]
        if head["type"] == "boxes_scores" and head.get("box_format", "xyxy") == "xyxy" \
                and head.get("boxes") in out and head.get("scores") in out:
            boxes, scores = out[head["boxes"]][0], out[head["scores"]][0]
            for i, c in nms(boxes, scores, head["score_threshold"], head["iou_threshold"])[:head["max_detections"]]:
                label = info["labels"][c] if c < len(info["labels"]) else str(c)
                print(f"  {label} {scores[i, c]:.2f} at [{', '.join(f'{v:.1f}' for v in boxes[i])}] "
                      "(x1, y1, x2, y2 in network-input pixels)")
    if args.out:
        np.savez(args.out, **{k: np.concatenate(v) for k, v in stacked.items()})


def _io_names(path):
    """A .tflite's input and output names in the interpreter's order (its serving signature)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    sig, sub = model.SignatureDefs(0), model.Subgraphs(0)
    names = {t.TensorIndex(): t.Name().decode() for t in [sig.Inputs(i) for i in range(sig.InputsLength())]
             + [sig.Outputs(i) for i in range(sig.OutputsLength())]}
    return ([names[sub.Inputs(i)] for i in range(sub.InputsLength())],
            [names[sub.Outputs(i)] for i in range(sub.OutputsLength())])


if __name__ == "__main__":
    main()
