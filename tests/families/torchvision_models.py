"""torchvision detectors for the recipe tests, built without downloads and initialised so
their outputs have the spread of a trained model (torchvision's own init for an untrained
SSDlite gives outputs near 1e-20, which would test nothing)."""

from __future__ import annotations

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
