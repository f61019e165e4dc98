"""U-Net for semantic segmentation (Ronneberger, Fischer & Brox, "U-Net: Convolutional
Networks for Biomedical Image Segmentation", MICCAI 2015), small enough for a CPU.

An encoder of conv-BN-ReLU pairs halving the resolution between levels, a decoder that
upsamples (transposed 2x2 convolution), concatenates the encoder level of the same
resolution and convolves again, and a 1x1 classifier giving per-pixel class logits at the
input resolution. `widths` are the channels per level, shallow to deep.

ModelOutput for task=segmentation: logits (B, classes, H, W); features: every level as
computed, the encoder levels shallow -> deep and then the decoder levels back up, so
features[-1] is the full-resolution map the classifier reads (B, widths[0], H, W), which is
also `embedding` (a per-pixel embedding, not pooled); preact_features: None.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model


def conv_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU: the unit of every U-Net level."""
    layers: list[nn.Module] = []
    for ch in (in_ch, out_ch):
        layers += [nn.Conv2d(ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNetSeg(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 1, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"unet widths={list(widths)}: give at least two levels")
        self.widths = widths
        self.down = nn.ModuleList(conv_pair(c_in, c_out)
                                  for c_in, c_out in zip((in_chans, *widths[:-1]), widths))
        self.pool = nn.MaxPool2d(2)
        shallow_first = list(zip(widths[:-1], widths[1:]))  # (shallow, deep) level pairs
        self.up = nn.ModuleList(nn.ConvTranspose2d(deep, shallow, 2, stride=2)
                                for shallow, deep in reversed(shallow_first))
        self.merge = nn.ModuleList(conv_pair(2 * shallow, shallow)
                                   for shallow, _ in reversed(shallow_first))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> ModelOutput:
        side = x.shape[-1]
        if x.shape[-2] % 2 ** (len(self.widths) - 1) or side % 2 ** (len(self.widths) - 1):
            raise ValueError(f"unet with {len(self.widths)} levels needs inputs divisible by "
                             f"{2 ** (len(self.widths) - 1)}, got {tuple(x.shape[-2:])}")
        skips: list[Tensor] = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else self.pool(x))
            skips.append(x)
        features = list(skips)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
            features.append(x)
        return ModelOutput(logits=self.classifier(x), features=features, embedding=x)


@register_model(kind="segmentation")
def unet_seg(num_classes: int = 11, in_chans: int = 1, widths: Sequence[int] = (16, 32, 64),
             **kwargs) -> UNetSeg:
    """The teacher of task=segmentation: ~120 k parameters at widths 16/32/64."""
    return UNetSeg(num_classes, in_chans, widths)


@register_model(kind="segmentation")
def unet_seg_small(num_classes: int = 11, in_chans: int = 1, widths: Sequence[int] = (8, 16, 32),
                   **kwargs) -> UNetSeg:
    """The student of task=segmentation: a quarter of the teacher's parameters (8/16/32)."""
    return UNetSeg(num_classes, in_chans, widths)
