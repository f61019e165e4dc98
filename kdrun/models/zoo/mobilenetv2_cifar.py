"""MobileNetV2 for 32 px images.

Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018, table 2: a 3x3 stride-2 stem conv, seven groups
of inverted residual blocks (1x1 expansion by t, 3x3 depthwise, linear 1x1
projection; identity shortcut when the shape is kept), a 1x1 conv to 1280
channels, global average pooling and a linear classifier.

`mobilenetv2` defaults to width_mult=0.5: the "MobileNetV2" of the CRD /
RepDistiller KD tables (Tian et al. 2020) is this half-width model (their
`mobile_half`, about 0.81M parameters for 100 classes). As in the paper, the
multiplier does not shrink the final 1280-channel conv below 1280. As in those
tables' code, channel counts are int(c * width_mult) and activations are ReLU
rather than the paper's ReLU6; neither changes the parameter count.

Feature stages group the block groups by resolution (16, 8, 4, 2 px at 32 px
input): stem, groups 1-2, group 3, groups 4-5, groups 6-7. Stage outputs come
from linear bottlenecks, with no ReLU after them, so their preact_features are
the features themselves; the stem's is its BN output before the ReLU. The
embedding pools the 1280-channel conv, so it is wider than the last feature.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.registry import register_model
from kdrun.models.zoo.layers import ConvBnRelu, Stage, StagedNet, conv_bn, init_weights

# (expansion t, channels c, blocks n, first stride s) per block group, grouped into stages
STAGES = [
    [(1, 16, 1, 1), (6, 24, 2, 1)],
    [(6, 32, 3, 2)],
    [(6, 64, 4, 2), (6, 96, 3, 1)],
    [(6, 160, 3, 2), (6, 320, 1, 1)],
]


class InvertedResidual(nn.Module):
    """1x1 expand-ReLU, 3x3 depthwise-ReLU, linear 1x1 project, + x when the shape allows."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.expand = conv_bn(in_ch, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv_bn(hidden, out_ch, 1)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))
        if self.residual:
            out = out + x
        return out, out  # linear bottleneck: no ReLU, the output is its own preact


class MobileNetV2(StagedNet):
    def __init__(self, width_mult: float = 0.5, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        in_ch = int(32 * width_mult)
        self.stem = ConvBnRelu(in_chans, in_ch, 3, stride=2)
        self.feature_channels = [in_ch]
        stages = []
        for groups in STAGES:
            blocks = []
            for t, c, n, s in groups:
                out_ch = int(c * width_mult)
                for j in range(n):
                    blocks.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                    in_ch = out_ch
            stages.append(Stage(*blocks))
            self.feature_channels.append(in_ch)
        self.stages = nn.ModuleList(stages)
        last = max(1280, int(1280 * width_mult))
        self.head = ConvBnRelu(in_ch, last, 1)
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)


@register_model
def mobilenetv2(num_classes: int = 100, in_chans: int = 3, width_mult: float = 0.5,
                **kwargs) -> nn.Module:
    return MobileNetV2(width_mult, num_classes, in_chans, **kwargs)
