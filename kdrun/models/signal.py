"""Models for 1-D signals (B, C, L): the students of a cross-modal pair whose modality is
not an image (e.g. the intensity profiles of kdrun/data/paired.py).

signal_cnn: a small 1-D ConvNet in the style of the zoo ResNets' plain stem and
stages (conv-BN-ReLU; each stage halves the length), global average pooling and a
linear classifier. It returns the ModelOutput contract: features are (B, C_i, L_i)
stage tensors, shallow -> deep, with their pre-ReLU values. An image-shaped input
(B, C, H, W) is read as the signal of its flattened pixels, so image probes run.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model

SIGNAL_MODELS = ("signal_cnn",)


def conv1d_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm1d(out_ch))


class SignalStage(nn.Module):
    """Strided conv-BN-ReLU then conv-BN (-ReLU): returns (out, preact)."""

    def __init__(self, in_ch: int, width: int):
        super().__init__()
        self.down = conv1d_bn(in_ch, width, 3, 2)
        self.conv = conv1d_bn(width, width, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.conv(F.relu(self.down(x)))
        return F.relu(pre), pre


class SignalCNN(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, widths: tuple[int, ...] = (32, 64, 128),
                 stem_kernel: int = 5):
        super().__init__()
        self.stem = conv1d_bn(in_chans, widths[0], stem_kernel)
        self.stages = nn.ModuleList(SignalStage(a, b) for a, b in zip(widths, widths[1:]))
        self.fc = nn.Linear(widths[-1], num_classes)
        self.feature_channels = list(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> ModelOutput:
        if x.dim() == 4:
            x = x.flatten(2)
        pre = self.stem(x)
        x = F.relu(pre)
        features, preacts = [x], [pre]
        for stage in self.stages:
            x, pre = stage(x)
            features.append(x)
            preacts.append(pre)
        embedding = x.mean(dim=2)
        return ModelOutput(self.fc(embedding), features, embedding, preacts)


@register_model
def signal_cnn(num_classes: int = 10, in_chans: int = 1, **kwargs) -> SignalCNN:
    """Stem 32, stages 64 and 128 (about 70k parameters for 10 classes)."""
    return SignalCNN(num_classes, in_chans, **kwargs)
