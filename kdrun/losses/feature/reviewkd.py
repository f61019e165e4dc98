"""reviewkd: Chen, Liu, Zhao, Jia, "Distilling Knowledge via Knowledge Review" (CVPR 2021).

Each teacher level is taught by a fusion of the student's same and deeper
levels. Going from the deepest level up, an attention-based fusion (ABF)
module maps a student level to a shared width (1x1 conv + BN), blends it with
the fused result of the level below (upsampled, nearest) through two
sigmoid attention maps from a 1x1 conv, and emits (3x3 conv + BN) a map of the
teacher level's width and size. The hierarchical context loss (HCL) compares
each emitted map with the teacher level at full resolution and after average
pooling to 4x4, 2x2 and 1x1 (those smaller than the map), weights 1, 1/2, 1/4,
1/8, normalised by their sum:
    weight * sum_levels HCL(ABF_l, T_l),   ramped in over warmup_epochs = 20
Levels: the student's stages 1-3 and its embedding as a 1x1 map against the
teacher's stages 1-3 (pre-ReLU where the teacher provides them: zoo models; a
timm teacher's stage outputs otherwise) and its embedding, as in the authors'
CIFAR code. Shared width = min(512, the student's deepest width). Weight 1 and
warm-up 20 are the authors' CIFAR code (--kd-loss-weight 1, --kd-warm-up 20;
mdistiller the same).

Peers differ: the authors ramp by min(1, epoch / 20) with epoch counted from 0
(no term in the first epoch); kdrun's engine ramps by min(1, (epoch + 1) / 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss


def hierarchical_context_loss(student: Tensor, teacher: Tensor, levels=(4, 2, 1)) -> Tensor:
    """MSE at full size plus MSE of average-pooled maps (l x l for l smaller than the map),
    weights 1, 1/2, 1/4, ... normalised by their sum."""
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for size in levels:
        if size >= student.shape[2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, size),
                                          F.adaptive_avg_pool2d(teacher, size))
        total += weight
    return loss / total


class AttentionFusion(nn.Module):
    """ABF: student level -> shared width, fused with the deeper level's result, -> teacher shape."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 out_size: tuple[int, int], fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                    nn.BatchNorm2d(mid_channels))
        self.emit = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(out_channels))
        self.attention = (nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid())
                          if fuse else None)
        self.out_size = out_size

    def forward(self, x: Tensor, deeper: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.reduce(x)
        if self.attention is not None:
            deeper = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            z = self.attention(torch.cat([x, deeper], 1))
            x = x * z[:, :1] + deeper * z[:, 1:]
        if tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="nearest")
        return self.emit(x), x


@dataclass
class ReviewKDConfig(LossConfig):
    warmup_epochs: int = bounded(20, ge=0)
    weight: float = bounded(1.0, gt=0)
    max_mid_channels: int = bounded(512, gt=0)
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class ReviewKD(StagePairLoss):
    name = "reviewkd"
    config = ReviewKDConfig
    requires = ("features", "embedding")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s_levels, t_levels = self.levels(student, teacher)
        mid = min(cfg.max_mid_channels, s_levels[-1].shape[1])
        deepest = len(s_levels) - 1
        self.fusions = nn.ModuleList(
            AttentionFusion(s.shape[1], mid, t.shape[1], tuple(t.shape[-2:]), fuse=i < deepest)
            for i, (s, t) in enumerate(zip(s_levels, t_levels)))

    def stage_lists(self, student, teacher):
        """The teacher's pre-ReLU stages where it has them (zoo), else its stage outputs (timm)."""
        t = teacher.preact_features if teacher.preact_features is not None else teacher.features
        return student.features, t

    def levels(self, student, teacher) -> tuple[list[Tensor], list[Tensor]]:
        """The paired stages, then each model's embedding as a 1x1 map."""
        s, t = self.stages(student, teacher)
        return ([*s, student.embedding[:, :, None, None]],
                [*t, teacher.embedding[:, :, None, None]])

    def forward(self, student, teacher, batch):
        s_levels, t_levels = self.levels(student, teacher)
        total, deeper = 0.0, None
        for s, t, fusion in reversed(list(zip(s_levels, t_levels, self.fusions))):
            out, deeper = fusion(s, deeper)
            total = total + hierarchical_context_loss(out, t)
        return {"reviewkd": self.cfg.weight * total}
