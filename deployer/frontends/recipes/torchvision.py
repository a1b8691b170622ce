"""`torchvision`: SSD, SSDlite, RetinaNet and FCOS from torchvision.models.detection, lowered as
backbone + head only. Their forward() resizes, normalises, decodes and runs NMS in Python
(GeneralizedRCNNTransform, postprocess_detections), which neither exports nor belongs in a
deployed graph: the spec's preprocessing does the first, the `anchors` head the rest, with
the model's own anchors (for the spec's input size) and box coder."""

from __future__ import annotations

from deployer.errors import UserError
from deployer.frontends.recipes import Recipe

RECIPE = Recipe(name="torchvision", make="deployer.frontends.recipes.torchvision:make",
                build="deployer.frontends.recipes.torchvision:build", heads=("anchors",),
                # The dynamo exporter takes ~50 s on SSDlite320 (2 cores), the TorchScript one ~10 s,
                # for the same graph.
                exporter="torchscript",
                summary="torchvision SSD/SSDlite/RetinaNet: backbone + head, anchors and box coder to the head")

# The detector's builder is called with these so nothing is downloaded: the spec's weights
# (a state_dict) are loaded after.
NO_DOWNLOAD = {"weights": None, "weights_backbone": None}


def make(factory, spec):
    """The torchvision model, built for the spec's labels (+ background) without downloads."""
    try:
        return factory(num_classes=len(spec.labels) + 1, **NO_DOWNLOAD)
    except TypeError as exc:
        raise UserError(f"{spec.path}: field 'source.factory': '{spec.source.factory}' is not a torchvision "
                        f"detection builder taking num_classes, weights and weights_backbone ({exc})") from None


def _check_preprocess(model, spec) -> None:
    """The graph starts after torchvision's normalisation: the spec must do the same one."""
    transform = getattr(model, "transform", None)
    if transform is None:
        return
    pre = spec.preprocess
    mean = [m * pre.scale / 255.0 for m in pre.mean]
    std = [s * pre.scale / 255.0 for s in pre.std]
    want_mean, want_std = list(transform.image_mean), list(transform.image_std)
    if any(abs(a - b) > 1e-3 for a, b in zip(mean + std, want_mean + want_std)):
        raise UserError(f"{spec.path}: field 'preprocess': the model normalises with mean {want_mean} and std "
                        f"{want_std} (pixels in 0..1); set preprocess.scale = 255.0, mean = {want_mean}, "
                        f"std = {want_std}")


def build(model, spec):
    """(module returning (box deltas, class logits), head fields with the anchors array)."""
    import torch
    from torch import nn
    from torchvision.models.detection.image_list import ImageList

    kind = type(model).__name__
    if not all(hasattr(model, a) for a in ("backbone", "head", "anchor_generator", "box_coder")):
        raise UserError(f"{spec.path}: field 'source.recipe': the torchvision recipe takes SSD, SSDlite, "
                        f"RetinaNet and FCOS models (backbone, head, anchor generator, box coder); got {kind}")
    fcos = kind == "FCOS"
    wanted = 3 if fcos else 2
    if len(spec.outputs) != wanted:
        names = "box regression, class logits" + (", centerness" if fcos else "")
        raise UserError(f"{spec.path}: field 'outputs.names': the {kind} recipe gives {wanted} outputs ({names}), "
                        f"the spec names {len(spec.outputs)}")
    _check_preprocess(model, spec)

    class BackboneAndHead(nn.Module):
        def __init__(self, det):
            super().__init__()
            self.backbone, self.head = det.backbone, det.head

        def forward(self, images):
            features = list(self.backbone(images).values())
            out = self.head(features)
            if fcos:
                return out["bbox_regression"], out["cls_logits"], out["bbox_ctrness"]
            return out["bbox_regression"], out["cls_logits"]

    part = BackboneAndHead(model).eval()
    inp = spec.inputs[0]
    dummy = torch.zeros(inp.shape)
    with torch.no_grad():
        features = list(model.backbone(dummy).values())
        anchors = model.anchor_generator(ImageList(dummy, [(inp.height, inp.width)]), features)[0]
    activation = "softmax" if "SSD" in kind else "sigmoid"
    head = {"activation": activation, "background": 0, "delta_order": "xywh"}
    if fcos:   # BoxLinearCoder(normalize_by_size=True) and a centerness output
        head.update({"coder": "ltrb", "centerness": spec.outputs[2]})
    else:
        head.update({"coder": "deltas", "box_coder_weights": [float(w) for w in model.box_coder.weights]})
    return part, head, anchors.numpy()
