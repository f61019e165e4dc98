"""What the zoo families share: conv-BN, stages keeping pre-ReLU outputs, the head, He init.

Convention: a block (and so a stage) returns `(out, preact)`, where `out` is what
the next block reads and `preact` is the same tensor before the block's final
ReLU. Keeping the pair costs nothing (the ReLU is not in-place) and lets the
OFD and AB losses read pre-ReLU stages without a second pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.output import ModelOutput


def conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
            groups: int = 1) -> nn.Sequential:
    """A bias-free convolution ('same' padding) followed by BatchNorm, no activation."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch))


class ConvBnRelu(nn.Module):
    """conv-BN-ReLU that also returns its pre-ReLU output: a stem, or a head before pooling."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = conv_bn(in_ch, out_ch, kernel, stride)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.conv(x)
        return F.relu(pre), pre


class Stage(nn.Sequential):
    """Blocks run in order; each returns (out, preact) and the stage returns the last pair."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = x
        for block in self:
            x, pre = block(x)
        return x, pre


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's shuffle: (B, g*n, H, W) -> view (B, g, n) -> transpose -> flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def classify(fc: nn.Linear, last: Tensor, features: list[Tensor],
             preacts: list[Tensor]) -> ModelOutput:
    """Global-average-pool `last` into the embedding and apply the classifier."""
    embedding = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
    return ModelOutput(logits=fc(embedding), features=features, embedding=embedding,
                       preact_features=preacts)


class StagedNet(nn.Module):
    """A stem and stages that return (out, preact) pairs, an optional head, pooling, a linear layer.

    Subclasses set `stem`, `stages` (a ModuleList), `fc`, optionally `head` (a module
    returning (out, preact), e.g. a 1x1 conv widening the last stage before pooling)
    and `feature_channels`, then call `init_weights(self)`.
    """

    stem: nn.Module
    stages: nn.ModuleList
    fc: nn.Linear
    feature_channels: list[int]

    def __init__(self):
        super().__init__()
        self.head: nn.Module | None = None

    def get_classifier(self) -> nn.Linear:
        """The linear classifier (timm's name), e.g. for losses that reuse a teacher's head."""
        return self.fc

    def forward(self, x: Tensor) -> ModelOutput:
        features, preacts = [], []
        for stage in (self.stem, *self.stages):
            x, pre = stage(x)
            features.append(x)
            preacts.append(pre)
        if self.head is not None:
            x, _ = self.head(x)
        return classify(self.fc, x, features, preacts)


def init_weights(model: nn.Module) -> None:
    """He et al. (2015) init for convolutions (normal, fan-out, gain for ReLU), unit BatchNorm,
    zero biases; linear weights keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
