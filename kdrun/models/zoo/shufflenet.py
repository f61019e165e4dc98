"""ShuffleNet V1 and V2 for 32 px images.

- Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional
  Neural Network for Mobile Devices", CVPR 2018: units of 1x1 group conv,
  channel shuffle, 3x3 depthwise conv and 1x1 group conv; a stride-2 unit
  concatenates a 3x3 average pool of its input. shufflenetv1 is the g=3 network
  of table 1: stages of 4/8/4 units with 240/480/960 output channels.
- Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", ECCV 2018: units that split the channels in half and
  transform one half; a stride-2 unit transforms the whole input in two branches.
  shufflenetv2 is the 1x network of table 5 (116/232/464 channels, 3/7/3 units
  after each stage's stride-2 unit, a 1x1 conv to 1024 before pooling).

For 32 px input, as in the KD tables' code (CRD, Tian et al. 2020), the ImageNet
stem (3x3 stride-2 conv and max pool, which would leave 8 px) is replaced by a
1x1 conv to 24 channels at full resolution, so the stages run at 16, 8 and 4 px.
Also as there, a V1 unit's bottleneck is a quarter of its branch's output width,
and its depthwise conv is followed by a ReLU (the V1 paper has none there). The
zoo follows the tables' code wherever it differs from a paper without changing
the parameter count, so that their published accuracies apply.

features: stem, then each stage's output; preact_features: the same before the
final ReLU (for V2, the concatenation before its branches' last ReLUs, shuffled
like the output, so ReLU(preact) == feature).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.registry import register_model
from kdrun.models.zoo.layers import (ConvBnRelu, Stage, StagedNet, channel_shuffle, conv_bn,
                                    init_weights)

STEM_WIDTH = 24


class ShuffleUnitV1(nn.Module):
    """1x1 group conv-BN-ReLU, shuffle, 3x3 depthwise-BN-ReLU, 1x1 group conv-BN; then add
    the input (stride 1) or concatenate its 3x3 average pool (stride 2); ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int, first: bool = False):
        super().__init__()
        branch_ch = out_ch - in_ch if stride == 2 else out_ch
        mid = branch_ch // 4
        self.reduce_groups = 1 if first else groups  # too few input channels to group (paper)
        self.reduce = conv_bn(in_ch, mid, 1, groups=self.reduce_groups)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.expand = conv_bn(mid, branch_ch, 1, groups=groups)
        self.pool = nn.AvgPool2d(3, 2, padding=1) if stride == 2 else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = channel_shuffle(F.relu(self.reduce(x)), self.reduce_groups)
        out = self.expand(F.relu(self.depthwise(out)))
        pre = out + x if self.pool is None else torch.cat([out, self.pool(x)], 1)
        return F.relu(pre), pre


class ShuffleUnitV2(nn.Module):
    """Stride 1: split in half, pass one half, send the other through 1x1-BN-ReLU, 3x3
    depthwise-BN, 1x1-BN-ReLU. Stride 2: a (3x3 depthwise/2-BN, 1x1-BN-ReLU) branch beside
    that one on the whole input. Concatenate and shuffle the two halves."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        half = out_ch // 2
        self.left = (nn.Sequential(conv_bn(in_ch, in_ch, 3, 2, groups=in_ch),
                                   conv_bn(in_ch, half, 1)) if stride == 2 else None)
        self.reduce = conv_bn(in_ch if stride == 2 else half, half, 1)
        self.depthwise = conv_bn(half, half, 3, stride, groups=half)
        self.expand = conv_bn(half, half, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.left is None:
            passed, x = x.chunk(2, dim=1)  # `passed` is a block output, already >= 0
        else:
            passed = self.left(x)
        out = self.expand(self.depthwise(F.relu(self.reduce(x))))
        pre = channel_shuffle(torch.cat([passed, out], 1), 2)
        return F.relu(pre), pre


class ShuffleNetV1(StagedNet):
    def __init__(self, num_classes: int = 100, in_chans: int = 3, groups: int = 3,
                 widths: tuple[int, ...] = (240, 480, 960), units: tuple[int, ...] = (4, 8, 4)):
        super().__init__()
        self.stem = ConvBnRelu(in_chans, STEM_WIDTH, 1)
        self.feature_channels = [STEM_WIDTH, *widths]
        stages, in_ch = [], STEM_WIDTH
        for i, (width, n) in enumerate(zip(widths, units)):
            stages.append(Stage(*[
                ShuffleUnitV1(in_ch if j == 0 else width, width, 2 if j == 0 else 1, groups,
                              first=i == 0 and j == 0) for j in range(n)]))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)


class ShuffleNetV2(StagedNet):
    def __init__(self, num_classes: int = 100, in_chans: int = 3,
                 widths: tuple[int, ...] = (116, 232, 464), units: tuple[int, ...] = (3, 7, 3),
                 head_width: int = 1024):
        super().__init__()
        self.stem = ConvBnRelu(in_chans, STEM_WIDTH, 1)
        self.feature_channels = [STEM_WIDTH, *widths]
        stages, in_ch = [], STEM_WIDTH
        for width, n in zip(widths, units):
            stages.append(Stage(ShuffleUnitV2(in_ch, width, 2),
                                *[ShuffleUnitV2(width, width, 1) for _ in range(n)]))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.head = ConvBnRelu(in_ch, head_width, 1)
        self.fc = nn.Linear(head_width, num_classes)
        init_weights(self)


@register_model
def shufflenetv1(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return ShuffleNetV1(num_classes, in_chans, **kwargs)


@register_model
def shufflenetv2(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return ShuffleNetV2(num_classes, in_chans, **kwargs)
