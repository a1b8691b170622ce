"""torchvision detectors for the recipe tests (one-stage SSDlite, RetinaNet, FCOS; two-stage
Faster R-CNN), built without downloads and initialised so their outputs have the spread of a
trained model (torchvision's own init for an untrained SSDlite gives outputs near 1e-20,
which would test nothing)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large


def _spread(model: nn.Module, logits: nn.Module, box_convs: list) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    for m in logits.modules():   # class logits spread over a few units: some scores above 0.25
        if isinstance(m, nn.Conv2d):
            m.weight.data.mul_(0.5)
    for conv in box_convs:       # box deltas of a trained model: small corrections of the anchors
        conv.weight.data.mul_(0.02 / max(float(conv.weight.detach().std()), 1e-6) / (conv.weight.shape[1] ** 0.5))
        if conv.bias is not None:
            conv.bias.data.zero_()
    return model


def ssdlite(num_classes: int = 5, weights=None, weights_backbone=None) -> nn.Module:
    model = ssdlite320_mobilenet_v3_large(num_classes=num_classes, weights=weights, weights_backbone=weights_backbone)
    box_convs = [[m for m in seq.modules() if isinstance(m, nn.Conv2d)][-1]
                 for seq in model.head.regression_head.module_list]
    return _spread(model, model.head.classification_head, box_convs)


def retinanet(num_classes: int = 5, weights=None, weights_backbone=None) -> nn.Module:
    """torchvision's RetinaNet on a small ResNet-18 FPN (the zoo's ResNet-50 is 34 M parameters)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.resnet import resnet18
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = _resnet_fpn_extractor(resnet18(weights=weights_backbone), 5, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    model = RetinaNet(backbone, num_classes, min_size=160, max_size=160)
    return _spread(model, model.head.classification_head, [model.head.regression_head.bbox_reg])


def fcos(num_classes: int = 5, weights=None, weights_backbone=None) -> nn.Module:
    """torchvision's FCOS (anchor-free: ltrb distances and centerness) on a small ResNet-18 FPN."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.resnet import resnet18
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = _resnet_fpn_extractor(resnet18(weights=weights_backbone), 5, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    model = FCOS(backbone, num_classes, min_size=160, max_size=160)
    model = _spread(model, model.head.classification_head, [model.head.regression_head.bbox_reg])
    model.head.regression_head.bbox_reg.bias.data.fill_(1.0)   # boxes about anchor-sized, as once trained
    return model


def _scale_to(layer: nn.Module, outputs, std: float) -> None:
    """Scale `layer`'s weight and bias so that `outputs` (what it gave) would have standard deviation `std`."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    factor = std / max(float(torch.cat([o.flatten() for o in outputs]).std()), 1e-12)
    layer.weight.data.mul_(factor)
    if layer.bias is not None:
        layer.bias.data.mul_(factor)


def _calibration_images(count: int, size: int) -> list:
    """The first bundled calibration images (never evaluated on) as 0..1 CHW tensors."""
    import numpy as np
    from PIL import Image

    folder = Path(__file__).resolve().parents[2] / "calibration" / "calib" / "images"
    return [torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) / 255.0)
            .permute(2, 0, 1).contiguous() for f in sorted(folder.iterdir())[:count]]


def fasterrcnn(num_classes: int = 5, weights=None, weights_backbone=None, **kwargs) -> nn.Module:
    """torchvision's two-stage fasterrcnn_mobilenet_v3_large_320_fpn with its activations at a
    trained model's scale (torchvision's init leaves its features near 1e-9): batch-norm
    statistics measured on bundled calibration images, then each head layer scaled so the
    objectness and class logits spread over a few units (scores seldom tie) and the box deltas
    are small. Its RoI stage keeps scores above 0.5 (at torchvision's 0.05 every row of random
    logits is kept): some images then have fewer detections than rows, as a trained model's do."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    kwargs.setdefault("box_score_thresh", 0.5)
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=num_classes, weights=weights,
                                                  weights_backbone=weights_backbone, **kwargs)
    images = _calibration_images(4, 320)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None                     # a plain average over the images
    model.eval()
    model.backbone.train()
    with torch.no_grad():
        model.backbone(model.transform(images)[0].tensors)
    model.eval()
    rpn, box = model.rpn.head, model.roi_heads
    with torch.no_grad():
        batch = model.transform(images)[0]
        features = model.backbone(batch.tensors)
        levels = list(features.values())
        _scale_to(rpn.conv[0][0], [rpn.conv[0][0](f) for f in levels], 1.0)
        hidden = [rpn.conv(f) for f in levels]
        _scale_to(rpn.cls_logits, [rpn.cls_logits(h) for h in hidden], 2.0)
        _scale_to(rpn.bbox_pred, [rpn.bbox_pred(h) for h in hidden], 0.05)
        proposals, _ = model.rpn(batch, features)
        x = box.box_roi_pool(features, proposals, batch.image_sizes).flatten(1)
        for fc in (box.box_head.fc6, box.box_head.fc7):
            _scale_to(fc, fc(x), 1.0)
            x = nn.functional.relu(fc(x))
        _scale_to(box.box_predictor.cls_score, box.box_predictor.cls_score(x), 1.0)
        _scale_to(box.box_predictor.bbox_pred, box.box_predictor.bbox_pred(x), 0.5)
    return model
