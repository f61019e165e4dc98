"""at: Zagoruyko & Komodakis, "Paying More Attention to Attention" (ICLR 2017).

Spatial attention maps Q = mean_c |A_c|^p (p = 2), flattened and L2-normalised,
are matched between paired stages:
    beta / 2 * sum_j mean((Q_s^j / |Q_s^j| - Q_t^j / |Q_t^j|)^2)
with beta = 1000, as in the authors' code. Channels may differ; where spatial
sizes differ (cross-architecture pairs) the larger map is average-pooled.

Peers differ: RepDistiller and mdistiller multiply by beta (not beta / 2),
i.e. twice the paper's strength at the same beta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss, match_spatial


def attention_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """(B, C, H, W) -> (B, H*W): channel mean of |A|^p, L2-normalised per sample."""
    return F.normalize(feature.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    student, teacher = match_spatial(student, teacher)
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


@dataclass
class ATConfig(LossConfig):
    beta: float = bounded(1000.0, gt=0)
    p: float = bounded(2.0, gt=0)
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class AT(StagePairLoss):
    name = "at"
    config = ATConfig

    def forward(self, student, teacher, batch):
        pairs = zip(*self.stages(student, teacher))
        total = sum(attention_loss(s, t, self.cfg.p) for s, t in pairs)
        return {"at": self.cfg.beta / 2 * total}
