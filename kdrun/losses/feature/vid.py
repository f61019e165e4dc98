"""vid: Ahn, Hu, Damianou, Lawrence, Dai, "Variational Information Distillation for
Knowledge Transfer" (CVPR 2019).

VID maximises a variational lower bound on the mutual information between
paired teacher and student stages: a Gaussian q(t | s) whose mean is a small
regressor mu(s) (three 1x1 convs with ReLUs) and whose per-channel variance
sigma_c^2 = softplus(alpha_c) + eps is learned (heteroscedastic over channels,
shared over positions). The loss is its negative log-likelihood (constants dropped):
    weight * sum_k mean_{b,c,h,w} [ log sigma_c^2 / 2 + (t - mu(s))^2 / (2 sigma_c^2) ]
Its minimum for a perfect regressor is mean(log sigma^2) / 2, not zero. The
larger of two maps is average-pooled to the smaller one's size.

Defaults are RepDistiller's CIFAR-100 settings (its VID code credits the authors'):
stages 1-3 (feat[1:-1]), regressor width = the teacher's channels, initial
variance 5, eps 1e-5, weight 1 and a mean over elements. The paper writes the
bound as a sum over channels and positions with per-layer weights lambda_k;
the mean is that sum divided by C*H*W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss, match_spatial


def gaussian_nll(mean: Tensor, target: Tensor, variance: Tensor) -> Tensor:
    """mean over elements of log(var)/2 + (target - mean)^2 / (2 var); var is per channel (C,)."""
    var = variance.view(1, -1, 1, 1)
    return (0.5 * (target - mean).pow(2) / var + 0.5 * torch.log(var)).mean()


class VariationalRegressor(nn.Module):
    """mu(s): 1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv; sigma^2 = softplus(alpha) + eps."""

    def __init__(self, s_channels: int, t_channels: int, init_variance: float, eps: float):
        super().__init__()
        mid = t_channels
        self.mean = nn.Sequential(nn.Conv2d(s_channels, mid, 1, bias=False), nn.ReLU(),
                                  nn.Conv2d(mid, mid, 1, bias=False), nn.ReLU(),
                                  nn.Conv2d(mid, t_channels, 1, bias=False))
        inverse_softplus = math.log(math.expm1(init_variance - eps))
        self.alpha = nn.Parameter(torch.full((t_channels,), inverse_softplus))
        self.eps = eps

    def variance(self) -> Tensor:
        return F.softplus(self.alpha) + self.eps

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        student, teacher = match_spatial(student, teacher)
        return gaussian_nll(self.mean(student), teacher, self.variance())


@dataclass
class VIDConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    init_variance: float = bounded(5.0, gt=0, why="the starting variance must exceed eps")
    eps: float = bounded(1e-5, gt=0)
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class VID(StagePairLoss):
    name = "vid"
    config = VIDConfig
    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.checked_stages(student, teacher)
        self.regressors = nn.ModuleList(
            VariationalRegressor(a.shape[1], b.shape[1], cfg.init_variance, cfg.eps)
            for a, b in zip(s, t))

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.init_variance <= cfg.eps:
            raise ConfigError(f"{cls.key('init_variance')}={cfg.init_variance} must exceed "
                              f"{cls.key('eps')}={cfg.eps} (RepDistiller uses 5.0 and 1e-5)")

    def forward(self, student, teacher, batch):
        pairs = zip(*self.stages(student, teacher))
        total = sum(reg(s, t) for (s, t), reg in zip(pairs, self.regressors))
        return {"vid": self.cfg.weight * total}
