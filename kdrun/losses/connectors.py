"""Learnable adapters from a student feature to a teacher feature's shape."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvConnector(nn.Module):
    """1x1 conv + BN mapping student channels to teacher channels, then the teacher's size.

    Sized from probe tensors (one dummy forward), never from hard-coded widths.
    The spatial size is matched by average pooling (student larger) or bilinear
    upsampling (student smaller), so any stage pair of any two families fits.
    """

    def __init__(self, student_feature: Tensor, teacher_feature: Tensor):
        super().__init__()
        c_in, c_out = student_feature.shape[1], teacher_feature.shape[1]
        self.size = tuple(teacher_feature.shape[-2:])
        self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        if tuple(x.shape[-2:]) == self.size:
            return x
        if x.shape[-2] > self.size[0]:
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
