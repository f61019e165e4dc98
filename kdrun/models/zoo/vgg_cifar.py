"""VGG with BatchNorm for 32 px images.

Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, configurations A (11 layers), B (13), D (16) and E (19),
with BatchNorm after every conv, as the KD tables use them (CRD, Tian et al.
2020, and its successors). vgg8 is those tables' smallest member: one conv per
group. The three 4096-wide fully connected layers are gone: the last group's
output is average-pooled and a single linear layer classifies it.

The five conv groups are the five feature stages (the first one is the stem).
A 2x2 max pool opens groups 2-4, so at 32 px they run at 32, 16, 8, 4 and 4 px;
the pool before the last group is dropped at this size, as in the KD tables'
code. Each group's last ReLU is applied outside it, so preact_features are the
groups' outputs before that ReLU.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.registry import register_model
from kdrun.models.zoo.layers import StagedNet, init_weights

# conv widths per group: A, B, D, E are Simonyan & Zisserman's table 1; S is vgg8
CONFIGS = {
    "S": [[64], [128], [256], [512], [512]],
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


class ConvGroup(nn.Module):
    """Optional 2x2 max pool, then 3x3 conv-BN-ReLU layers (the last ReLU in forward)."""

    def __init__(self, in_ch: int, widths: list[int], pool: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
        for width in widths:
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            in_ch = width
        self.body = nn.Sequential(*layers[:-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.body(x)
        return F.relu(pre), pre


class CifarVGG(StagedNet):
    def __init__(self, config: str, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        groups = CONFIGS[config]
        self.feature_channels = [g[-1] for g in groups]
        self.stem = ConvGroup(in_chans, groups[0], pool=False)
        self.stages = nn.ModuleList(
            ConvGroup(groups[i - 1][-1], groups[i], pool=i < len(groups) - 1)
            for i in range(1, len(groups)))
        self.fc = nn.Linear(groups[-1][-1], num_classes)
        init_weights(self)


@register_model
def vgg8(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarVGG("S", num_classes, in_chans, **kwargs)


@register_model
def vgg11_cifar(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarVGG("A", num_classes, in_chans, **kwargs)


@register_model
def vgg13_cifar(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarVGG("B", num_classes, in_chans, **kwargs)


@register_model
def vgg16_cifar(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarVGG("D", num_classes, in_chans, **kwargs)


@register_model
def vgg19_cifar(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return CifarVGG("E", num_classes, in_chans, **kwargs)
