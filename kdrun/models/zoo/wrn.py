"""Wide Residual Networks for 32 px images.

Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016. WRN-d-k: a 3x3 stem
conv with 16 channels, three stages of (d - 4) / 6 pre-activation wide basic
blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) with 16k, 32k and 64k channels at 32,
16 and 8 px, then BN-ReLU, global average pooling and a linear classifier. When
a block changes shape its shortcut is a 1x1 conv applied to the block's
activated input (BN-ReLU(x)), as in the authors' code.

Features in a pre-activation net. Stage outputs are raw residual sums (no BN or
ReLU at the end of a block), and `features` holds exactly those, as the KD
tables' code and attention transfer (Zagoruyko & Komodakis 2017) use them: the
stem conv output, then each stage's output. `preact_features[i]` is
`features[i]` after the BatchNorm that the network applies to it next and
before that BatchNorm's ReLU: the first block of the following stage's bn1, or
the final BN for the last stage. That is the pre-ReLU position OFD (Heo et al.
2019) distils for WRN, and ReLU(preact_features[-1]) is the tensor that is
pooled into the embedding. Each of those BNs runs once: the forward hands its
result to the block that owns it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model
from kdrun.models.zoo.layers import classify, init_weights


class WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x: Tensor, pre: Tensor | None = None) -> Tensor:
        """`pre` is bn1(x) when the caller has already computed it."""
        act = F.relu(self.bn1(x) if pre is None else pre)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop_rate:
            out = F.dropout(out, self.drop_rate, self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int = 100, in_chans: int = 3,
                 drop_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a wide ResNet has 6n+4 layers, got depth={depth}")
        n = (depth - 4) // 6
        self.feature_channels = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_chans, 16, 3, 1, padding=1, bias=False)
        stages, in_ch = [], 16
        for i, width in enumerate(self.feature_channels[1:]):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[
                WideBlock(in_ch if j == 0 else width, width, stride if j == 0 else 1, drop_rate)
                for j in range(n)]))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward(self, x: Tensor) -> ModelOutput:
        x = self.stem(x)
        features, preacts = [], []
        for stage in self.stages:
            pre = stage[0].bn1(x)
            features.append(x)
            preacts.append(pre)
            x = stage[0](x, pre)
            for block in stage[1:]:
                x = block(x)
        pre = self.bn(x)
        features.append(x)
        preacts.append(pre)
        return classify(self.fc, F.relu(pre), features, preacts)


@register_model
def wrn_16_1(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return WideResNet(16, 1, num_classes, in_chans, **kwargs)


@register_model
def wrn_16_2(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return WideResNet(16, 2, num_classes, in_chans, **kwargs)


@register_model
def wrn_40_1(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return WideResNet(40, 1, num_classes, in_chans, **kwargs)


@register_model
def wrn_40_2(num_classes: int = 100, in_chans: int = 3, **kwargs) -> nn.Module:
    return WideResNet(40, 2, num_classes, in_chans, **kwargs)
