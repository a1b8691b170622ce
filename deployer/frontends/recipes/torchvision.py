"""`torchvision`: detectors from torchvision.models.detection.

One-stage (SSD, SSDlite, RetinaNet, FCOS): lowered as backbone + head only. Their forward()
resizes, normalises, decodes and runs NMS in Python (GeneralizedRCNNTransform,
postprocess_detections), which neither exports nor belongs in a deployed graph: the spec's
preprocessing does the first, the `anchors` head the rest, with the model's own anchors (for
the spec's input size) and box coder.

Two-stage (Faster R-CNN; Mask and Keypoint R-CNN for their boxes): the proposals feed the RoI
stage, so there is no raw tensor to decode outside the graph. Lowered end to end for the
`end2end` head: backbone, RPN (anchors, top-k, NMS), RoIAlign, box head and its class-wise NMS,
i.e. torchvision's forward() minus GeneralizedRCNNTransform's normalise and resize, ending in
fixed-shape outputs (K = head.max_detections rows, zero-padded, and the count).
"""

from __future__ import annotations

import numpy as np

from deployer.errors import UserError
from deployer.frontends.recipes import Recipe

RECIPE = Recipe(name="torchvision", make="deployer.frontends.recipes.torchvision:make",
                build="deployer.frontends.recipes.torchvision:build", heads=("anchors", "end2end"),
                # The dynamo exporter takes ~50 s on SSDlite320 (2 cores), the TorchScript one ~10 s,
                # for the same graph; on Faster R-CNN (data-dependent shapes) only TorchScript's works.
                exporter="torchscript",
                summary="torchvision SSD/SSDlite/RetinaNet/FCOS: backbone + head, anchors and box coder to the "
                        "anchors head; Faster/Mask/Keypoint R-CNN: the whole detection graph, end2end head")

ONE_STAGE = "SSD, SSDlite, RetinaNet and FCOS"
TWO_STAGE = "FasterRCNN, MaskRCNN and KeypointRCNN"

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


def _two_stage(model) -> bool:
    return all(hasattr(model, a) for a in ("backbone", "rpn", "roi_heads"))


def build(model, spec):
    """(module to lower, head fields it knows, anchors array): backbone + head for a one-stage
    model (anchors head), the whole detection graph for a two-stage one (end2end head)."""
    kind = type(model).__name__
    if _two_stage(model):
        if spec.head.type != "end2end":
            raise UserError(f"{spec.path}: field 'head.type': {kind} is a two-stage detector, lowered end to end "
                            f"(its RoI stage and NMS in the graph): set head.type = 'end2end' with boxes, scores, "
                            f"classes and count outputs, got '{spec.head.type}'")
        return _end_to_end(model, spec)
    if not all(hasattr(model, a) for a in ("backbone", "head", "anchor_generator", "box_coder")):
        raise UserError(f"{spec.path}: field 'source.recipe': the torchvision recipe takes {ONE_STAGE} models "
                        f"(backbone, head, anchor generator, box coder) and {TWO_STAGE} (backbone, rpn, "
                        f"roi_heads); got {kind}")
    if spec.head.type != "anchors":
        raise UserError(f"{spec.path}: field 'head.type': {kind} is a one-stage detector, lowered as backbone + "
                        f"head for head.type = 'anchors' (the model's anchors and box coder decode it), "
                        f"got '{spec.head.type}'")
    return _backbone_and_head(model, spec)


def _backbone_and_head(model, spec):
    """(module returning (box deltas, class logits), head fields with the anchors array)."""
    import torch
    from torch import nn
    from torchvision.models.detection.image_list import ImageList

    kind = type(model).__name__
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


# What the end2end graph gives: xyxy boxes in network-input pixels, 0-based classes (torchvision's
# labels minus its background 0), so the end2end head's defaults read it; a spec that says
# otherwise is refused rather than decoded wrong.
END2END_FIELDS = {"box_format": "xyxy", "normalized": False, "class_offset": 0}
ROLES = ("boxes", "scores", "classes", "count")


def _end_to_end(model, spec):
    """(module returning the spec's outputs among boxes (1, K, 4), scores (1, K), classes (1, K)
    and count (1,), all float32, the end2end head fields, no anchors)."""
    import torch
    from torch import nn
    from torchvision.models.detection.image_list import ImageList

    kind = type(model).__name__
    params = spec.head.params
    for key, value in END2END_FIELDS.items():
        if params.get(key, value) != value:
            raise UserError(f"{spec.path}: field 'head.{key}': the {kind} graph outputs xyxy boxes in input pixels "
                            f"and 0-based classes (torchvision's background removed): {key} = "
                            f"{str(value).lower() if isinstance(value, bool) else repr(value)}, "
                            f"got {params[key]!r}")
    named = {params[r]: r for r in ROLES if params.get(r)}
    if sorted(named) != sorted(spec.outputs):
        raise UserError(f"{spec.path}: field 'outputs.names': the {kind} graph gives boxes, scores, classes and "
                        f"count, each output named by the head (head.boxes, head.scores, head.classes, "
                        f"head.count); the spec names outputs {spec.outputs} and the head {sorted(named)}")
    order = [named[name] for name in spec.outputs]
    classes = getattr(getattr(model.roi_heads.box_predictor, "cls_score", None), "out_features", None)
    if classes is not None and classes != len(spec.labels) + 1:
        raise UserError(f"{spec.path}: field 'labels': the {kind} classifies {classes - 1} classes (+ background), "
                        f"the spec has {len(spec.labels)} labels")
    _check_preprocess(model, spec)
    inp = spec.inputs[0]
    if inp.shape[0] != 1 or inp.layout != "NCHW":
        raise UserError(f"{spec.path}: field 'inputs': the {kind} graph takes one NCHW image, shape "
                        f"[1, 3, height, width] (its outputs are one image's detections), got {inp.shape} {inp.layout}")
    height, width = inp.height, inp.width
    k = spec.head.max_detections
    transform = model.transform
    # torchvision's forward() would resize to min_size/max_size first: at the spec's input size
    # that resize is the identity, so the model itself and this graph see the same pixels, and
    # boxes stay in network-input pixels (postprocess scales by 1).
    transform.min_size, transform.max_size, transform.fixed_size = (min(height, width),), max(height, width), None
    # ... and pads to a multiple of size_divisible (bottom and right, after normalising).
    divisible = int(getattr(transform, "size_divisible", 1) or 1)
    pad_h, pad_w = -height % divisible, -width % divisible
    model.roi_heads.detections_per_img = k

    class EndToEnd(nn.Module):
        def __init__(self, det):
            super().__init__()
            self.backbone, self.rpn, self.roi_heads = det.backbone, det.rpn, det.roi_heads

        def forward(self, images):
            if pad_h or pad_w:
                images = nn.functional.pad(images, (0, pad_w, 0, pad_h))
            sizes = [(height, width)]
            features = self.backbone(images)
            if isinstance(features, torch.Tensor):
                features = {"0": features}
            proposals, _ = self.rpn(ImageList(images, sizes), features)
            # RoIHeads.forward in eval, box branch only (Mask/Keypoint R-CNN: boxes only)
            heads = self.roi_heads
            x = heads.box_head(heads.box_roi_pool(features, proposals, sizes))
            logits, deltas = heads.box_predictor(x)
            boxes, scores, labels = (t[0] for t in heads.postprocess_detections(logits, deltas, proposals, sizes))
            # at most k rows (detections_per_img): padded to exactly k with zeros (the reshape to
            # constant shapes makes them static in the graph), and the count of real ones
            out = {"boxes": torch.cat([boxes, boxes.new_zeros(k, 4)])[:k].reshape(1, k, 4),
                   "scores": torch.cat([scores, scores.new_zeros(k)])[:k].reshape(1, k),
                   "classes": torch.cat([(labels - 1).to(scores.dtype), scores.new_zeros(k)])[:k].reshape(1, k),
                   "count": torch.ones_like(scores).sum().reshape(1)}
            return tuple(out[role] for role in order)

    head = {**END2END_FIELDS, "score_floor": float(model.roi_heads.score_thresh)}
    return EndToEnd(model).eval(), head, np.zeros((0, 4), np.float32)
