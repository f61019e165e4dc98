"""ResNets for 32 px images.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
section 4.2: a 3x3 stem, then three stages of basic blocks (n blocks each, 6n+2
layers in all) at 32, 16 and 8 px, global average pooling and a linear classifier.
resnet8x4 and resnet32x4 are the 4x wider variants (stem 32, stages 64/128/256)
of the CRD paper (Tian, Krishnan, Isola, "Contrastive Representation
Distillation", ICLR 2020) and the KD tables that follow it.

As in those KD tables' code, a shortcut that changes shape is a 1x1 conv + BN
projection (the paper's option B), not option A's zero padding; it adds a few
thousand parameters and is what the published KD accuracies were measured with.

resnet50_cifar is the bottleneck ResNet-50 (stages [3, 4, 6, 3], widths 64-512,
expansion 4, stride on the 3x3 conv) with the ImageNet stem (7x7/2 conv and max
pool) replaced by a 3x3 stride-1 conv, so its stages run at 32, 16, 8 and 4 px.

features: stem, then each stage's output (post-ReLU); preact_features: the same
tensors before their last ReLU (the residual sum).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.registry import register_model
from kdrun.models.zoo.layers import ConvBnRelu, Stage, StagedNet, conv_bn, init_weights


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn(in_ch, width, 3, stride)
        self.conv2 = conv_bn(width, width, 3)
        self.shortcut = (conv_bn(in_ch, width, 1, stride)
                         if stride != 1 or in_ch != width else nn.Identity())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.conv2(F.relu(self.conv1(x))) + self.shortcut(x)
        return F.relu(pre), pre


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4x width, shortcut, ReLU after the sum."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv_bn(in_ch, width, 1)
        self.conv2 = conv_bn(width, width, 3, stride)
        self.conv3 = conv_bn(width, out_ch, 1)
        self.shortcut = (conv_bn(in_ch, out_ch, 1, stride)
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        pre = self.conv3(out) + self.shortcut(x)
        return F.relu(pre), pre


class CifarResNet(StagedNet):
    """3x3 stride-1 stem, then one stage per entry of `depths`; the first stage keeps the
    resolution and every later one halves it in its first block."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: list[int], widths: list[int],
                 stem_width: int, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        self.stem = ConvBnRelu(in_chans, stem_width)
        self.feature_channels = [stem_width]
        stages, in_ch = [], stem_width
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, width, stride=2 if i > 0 and j == 0 else 1))
                in_ch = width * block.expansion
            stages.append(Stage(*blocks))
            self.feature_channels.append(in_ch)
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)


def _cifar_resnet(depth: int, widths: list[int], num_classes: int, in_chans: int,
                  **kwargs) -> CifarResNet:
    """He et al.'s 6n+2-layer basic-block ResNet; widths = [stem, stage1, stage2, stage3]."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n+2 layers, got depth={depth}")
    n = (depth - 2) // 6
    return CifarResNet(BasicBlock, [n, n, n], widths[1:], widths[0], num_classes, in_chans,
                       **kwargs)


NARROW, WIDE = [16, 16, 32, 64], [32, 64, 128, 256]


@register_model
def resnet8(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(8, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet14(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(14, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet20(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(20, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet32(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(32, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet44(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(44, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet56(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(56, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet110(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(110, NARROW, num_classes, in_chans, **kwargs)


@register_model
def resnet8x4(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(8, WIDE, num_classes, in_chans, **kwargs)


@register_model
def resnet32x4(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return _cifar_resnet(32, WIDE, num_classes, in_chans, **kwargs)


@register_model
def resnet50_cifar(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 64, num_classes, in_chans,
                       **kwargs)
