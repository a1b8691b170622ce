"""Split a lowered ONNX graph at its head's decoding (issue 12): the body (every layer up to
the last convolution of each branch) and the decoding after it (quantize/head_float.py).

A full-integer model has int8 outputs; when those outputs are decoded boxes in pixels next
to 0..1 scores, one int8 step moves every box. Built from the body alone, its int8 outputs
are the raw per-branch tensors (box regression, class logits), each with its own scale, and
the decoding runs in float after it (`decode.onnx`, run by deployer's runners after the
artifact and shipped beside it for the application).
Runs in worker processes (imports onnx).
"""

from __future__ import annotations

from pathlib import Path


def boundary(model, decoding: set[str]) -> list[str]:
    """The tensors the decoding reads from the body (the pre-decode tensors), in graph order;
    graph outputs the body makes itself are part of it too."""
    graph = model.graph
    made_by_body = {o for n in graph.node if n.name not in decoding for o in n.output}
    made_by_body |= {i.name for i in graph.input}
    constants = {i.name for i in graph.initializer}
    wanted: list[str] = []
    for node in graph.node:
        if node.name in decoding:
            wanted += [t for t in node.input if t in made_by_body and t not in constants and t not in wanted]
    wanted += [o.name for o in graph.output if o.name in made_by_body and o.name not in wanted]
    return wanted


def split(onnx_path: str, out: Path, body: bool = True) -> dict | None:
    """Write `body.onnx` and `decode.onnx` into `out`, the body's outputs and the decoding's
    inputs named pre_decode_0, 1...; returns {"pre_decode": [{"name", "tensor": the ONNX
    tensor}], "decode_nodes": n}, or None when the graph has no decoding to split off.
    `body = False` writes the decoding only (the TFLite backend converts the body as extra
    outputs of the whole graph)."""
    import onnx
    from onnx.utils import Extractor

    from deployer.quantize.head_float import decode_nodes

    # The extractor needs every boundary tensor's type and shape (value_info): infer them.
    model = onnx.shape_inference.infer_shapes(onnx.load(onnx_path))
    decoding = set(decode_nodes(model))
    if not decoding:
        return None
    tensors = boundary(model, decoding)
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if set(tensors) & set(inputs):
        return None   # the decoding reads the image itself: nothing to split
    extractor = Extractor(model)
    parts = {"body": extractor.extract_model(inputs, tensors)} if body else {}
    parts["decode"] = extractor.extract_model(tensors, [o.name for o in model.graph.output])
    for part, m in parts.items():   # the extractor keeps the opsets; name the parts like the whole
        m.graph.name = f"{model.graph.name}_{part}"
    # The pair's interface gets names every format takes (ONNX tensor names such as
    # '/model.22/cv2.0/Conv_output_0' are not valid TensorFlow signature keys).
    names = {t: f"{PREFIX}{i}" for i, t in enumerate(tensors)}
    decode = parts["decode"]
    for value in [*(parts["body"].graph.output if body else []), *decode.graph.input]:
        value.name = names[value.name]
    for node in parts["body"].graph.node if body else []:
        node.output[:] = [names.get(o, o) for o in node.output]
    for node in decode.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    for value in decode.graph.output:   # an output the body makes itself passes through
        if value.name in names:
            decode.graph.node.append(onnx.helper.make_node("Identity", [names[value.name]], [value.name],
                                                           name=f"{names[value.name]}_passes"))
    out.mkdir(parents=True, exist_ok=True)
    for part, m in parts.items():
        onnx.save(m, str(out / f"{part}.onnx"))
    return {"pre_decode": [{"name": names[t], "tensor": t} for t in tensors], "decode_nodes": len(decoding)}


PREFIX = "pre_decode_"
