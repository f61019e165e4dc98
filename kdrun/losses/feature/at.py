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

from dataclasses import dataclass, field
from typing import List

import torch.nn.functional as F
from torch import Tensor

from kdrun.losses.base import LossConfig, require_positive
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
    knowledge: str = "feature"
    beta: float = 1000.0
    p: float = 2.0
    student_stages: List[int] = field(default_factory=lambda: [-3, -2, -1])
    teacher_stages: List[int] = field(default_factory=lambda: [-3, -2, -1])


@register_loss
class AT(StagePairLoss):
    name = "at"
    knowledge = "feature"
    config = ATConfig
    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        require_positive(cls, cfg, "beta")
        require_positive(cls, cfg, "p")

    def forward(self, student, teacher, batch):
        pairs = zip(*self.stages(student, teacher))
        total = sum(attention_loss(s, t, self.cfg.p) for s, t in pairs)
        return {"at": self.cfg.beta / 2 * total}
