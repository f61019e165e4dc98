"""ofd: Heo, Kim, Yun, Park, Kwak, Choi, "A Comprehensive Overhaul of Feature
Distillation" (ICCV 2019).

Pre-ReLU features are distilled through a connector r (1x1 conv + BN) with a
partial L2 that ignores what the teacher's ReLU would discard:
    sum_i w_i * sum d_p(max(t, m), r(s)) / B,  d_p(T, S) = 0 if S <= T <= 0 else (T - S)^2
The teacher margin m is, per channel, the expected value of the teacher's
negative pre-ReLU responses, E[t | t < 0] (the paper derives it from the BN
before the ReLU, assuming a Gaussian). Stage weights halve from the deepest
(w = 1) towards the input, and weight = 1e-3 on the per-sample sum, both as
in the authors' CIFAR code (mdistiller: FEAT_WEIGHT 0.001, same reduction).

Margin, kdrun's choice: a loss never calls a model and a teacher's pre-ReLU
tensor is not always a BN output (a ResNet stage ends in a residual sum), so
the margin is measured, not read off BN parameters: on the first training batch
the loss sees, E[t | t < 0] per channel over batch x positions (channels with no
negative value get -3 std, mirroring the authors' fallback of -3 sigma). It is
then fixed and saved with the loss (buffers), so resume is exact.

Needs preact_features from both models (zoo models; timm models fail before
training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss


def negative_mean(preact: Tensor) -> Tensor:
    """(B, C, H, W) -> (C,): E[x | x < 0] per channel; -3 std where a channel is never negative."""
    x = preact.detach().transpose(0, 1).flatten(1)
    count = (x < 0).sum(1)
    mean_neg = x.clamp(max=0).sum(1) / count.clamp(min=1)
    return torch.where(count > 0, mean_neg, -3 * x.std(1, unbiased=False))


def partial_l2(student: Tensor, teacher: Tensor, margin: Tensor) -> Tensor:
    """Summed d_p(max(t, m), s): no penalty where s <= target <= 0."""
    target = torch.max(teacher, margin.view(1, -1, 1, 1))
    mask = ((student > target) | (target > 0)).float()
    return ((student - target).pow(2) * mask).sum()


@dataclass
class OFDConfig(LossConfig):
    weight: float = bounded(1e-3, gt=0)  # on the per-sample sum (authors' CIFAR code: / 1000)
    # listed shallow to deep: the last pair weighs 1, each earlier one half the next
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class OFD(StagePairLoss):
    name = "ofd"
    config = OFDConfig
    requires = ("preact_features",)
    stage_field = "preact_features"

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.checked_stages(student, teacher)
        self.connectors = nn.ModuleList(ConvConnector(a, b) for a, b in zip(s, t))
        for i, b in enumerate(t):
            self.register_buffer(f"margin{i}", torch.zeros(b.shape[1]))
        self.register_buffer("margin_ready", torch.zeros((), dtype=torch.bool))

    def margins(self, teachers: list[Tensor]) -> list[Tensor]:
        if not self.margin_ready:
            for i, t in enumerate(teachers):
                getattr(self, f"margin{i}").copy_(negative_mean(t))
            self.margin_ready.fill_(True)
        return [getattr(self, f"margin{i}") for i in range(len(teachers))]

    def forward(self, student, teacher, batch):
        s, t = self.stages(student, teacher)
        n = len(t)
        total = sum(partial_l2(conn(a), b, m) / 2 ** (n - i - 1)
                    for i, (a, b, m, conn) in enumerate(zip(s, t, self.margins(t), self.connectors)))
        return {"ofd": self.cfg.weight * total / s[0].shape[0]}
