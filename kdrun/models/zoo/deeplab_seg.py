"""DeepLabV3 (Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", 2017) from torchvision, for task=segmentation at GPU scale.

torchvision builds the networks (ResNet-101 / ResNet-50 / MobileNetV3-Large backbones with
dilated last stages, output stride 8 or 16, and the ASPP head); this file only splits the
head so the distillation losses see what they read: features = [the backbone's last map, the
head's map before its 1x1 classifier], logits upsampled bilinearly to the input size,
embedding = the head's map. No weights are downloaded: `pretrained` is refused like any zoo
model; give a local file with `teacher.checkpoint=` (weights_only), e.g. a torchvision
DeepLabV3 state dict converted once on a machine with internet.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model


class DeepLabSeg(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.backbone = net.backbone
        *head, classifier = net.classifier       # ASPP, 3x3 conv, BN, ReLU | 1x1 conv
        self.head = nn.Sequential(*head)
        self.classifier = classifier

    def forward(self, x: Tensor) -> ModelOutput:
        deep = self.backbone(x)["out"]
        mapped = self.head(deep)
        logits = F.interpolate(self.classifier(mapped), size=x.shape[-2:], mode="bilinear",
                               align_corners=False)
        return ModelOutput(logits=logits, features=[deep, mapped], embedding=mapped)


def _build(builder: str, num_classes: int, in_chans: int) -> DeepLabSeg:
    import torchvision.models.segmentation as seg

    if in_chans != 3:
        raise ValueError(f"{builder} reads RGB images (in_chans=3), not in_chans={in_chans}")
    net = getattr(seg, builder)(weights=None, weights_backbone=None, num_classes=num_classes,
                                aux_loss=False)
    return DeepLabSeg(net)


@register_model(kind="segmentation")
def deeplabv3_resnet101_seg(num_classes: int = 19, in_chans: int = 3, **kwargs) -> DeepLabSeg:
    """The teacher of the Cityscapes recipe (58.6 M parameters at 19 classes)."""
    return _build("deeplabv3_resnet101", num_classes, in_chans)


@register_model(kind="segmentation")
def deeplabv3_resnet50_seg(num_classes: int = 19, in_chans: int = 3, **kwargs) -> DeepLabSeg:
    return _build("deeplabv3_resnet50", num_classes, in_chans)


@register_model(kind="segmentation")
def deeplabv3_mobilenet_seg(num_classes: int = 19, in_chans: int = 3, **kwargs) -> DeepLabSeg:
    """The student of the Cityscapes recipe (MobileNetV3-Large backbone, 11 M parameters)."""
    return _build("deeplabv3_mobilenet_v3_large", num_classes, in_chans)
