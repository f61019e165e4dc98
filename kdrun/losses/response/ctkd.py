"""ctkd: the learned temperature of CTKD and confidence-adaptive per-sample weights.

Not a `loss=` option: algorithm=adaptive puts AdaptiveKD in place of loss.kd.

Curriculum Temperature KD (Li et al., "Curriculum Temperature for Knowledge
Distillation", AAAI 2023): the KD temperature is a learnable module trained
*adversarially*, it maximises the KD loss the student minimises, through a gradient
reversal layer (Ganin & Lempitsky 2015) whose strength lambda follows a cosine
curriculum, so the task gets harder as the student gets better:
    lambda_e = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(e + 1, E) / E)) / 2
    T = T_min + (T_max - T_min) * sigmoid(theta)            (bounded, as in the authors' code)
`global`: one scalar theta (initialised to 1, so T starts at T_min + 0.731 (T_max - T_min));
`instance`: an MLP over the sorted teacher and student logits gives one theta per sample
(last layer zero-initialised). The MLP sees detached logits: the reversed gradient trains
the temperature only, never the student.

Per-sample weights w_i (detached) scale each sample's KD term:
    none        w_i = 1
    wsl         w_i = 1 - exp(-CE_s,i / CE_t,i)  (Zhou et al., "Rethinking Soft Labels for
                Knowledge Distillation: A Bias-Variance Tradeoff Perspective", ICLR 2021):
                large where the teacher is right and the student is not, small where the
                teacher is less sure of the label than the student
    confidence  w_i = p_t(y_i), the teacher's probability of the true label
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.losses.base import DistillationLoss
from kdrun.losses.response.kd import KDConfig

TEMPERATURES = ("global", "instance")
WEIGHTINGS = ("none", "wsl", "confidence")


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: Tensor, strength: float) -> Tensor:
    """Identity forward; the backward multiplies the gradient by -strength."""
    return _ReverseGradient.apply(x, strength)


def curriculum_strength(epoch: int, epochs: int, low: float, high: float) -> float:
    """CTKD's cosine curriculum for the reversal strength at 0-based `epoch`."""
    progress = min(epoch + 1, epochs) / epochs
    return low + (high - low) * 0.5 * (1.0 - math.cos(math.pi * progress))


class GlobalTemperature(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.theta = nn.Parameter(torch.ones(1))

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return self.theta


class InstanceTemperature(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        ranked = torch.cat([teacher_logits.detach().sort(1, descending=True).values,
                            student_logits.detach().sort(1, descending=True).values], 1)
        return self.net(ranked)                                  # (B, 1)


def sample_weights(kind: str, student_logits: Tensor, teacher_logits: Tensor,
                   labels: Tensor) -> Tensor:
    """(B,) detached per-sample weights of the KD term (see the module docstring)."""
    with torch.no_grad():
        if kind == "none":
            return torch.ones_like(labels, dtype=student_logits.dtype)
        if kind == "confidence":
            return teacher_logits.softmax(1).gather(1, labels[:, None]).squeeze(1)
        if kind == "wsl":
            ce_s = F.cross_entropy(student_logits, labels, reduction="none")
            ce_t = F.cross_entropy(teacher_logits, labels, reduction="none")
            return 1.0 - torch.exp(-(ce_s / (ce_t + 1e-7)).clamp_min(0.0))
    raise ValueError(f"unknown weighting {kind!r}; use one of {', '.join(WEIGHTINGS)}")


def per_sample_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: Tensor) -> Tensor:
    """(B,) T^2 * KL(p_t || p_s) at temperature T (a scalar or one per sample)."""
    log_p_s = F.log_softmax(student_logits / temperature, 1)
    log_p_t = F.log_softmax(teacher_logits / temperature, 1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(1)
    return kl * temperature.reshape(-1) ** 2


class AdaptiveKD(DistillationLoss):
    """kd with CTKD's learned temperature and per-sample weights: alpha * mean_i w_i T_i^2 KL_i.

    Stands in for the selected kd (same name, same alpha, so the engine's CE keeps 1 - alpha).
    `history` (a buffer, so it is checkpointed) holds per epoch: lambda, sum of T over the
    epoch's steps, number of values, min T, max T.
    """

    name = "kd"
    knowledge = "response"
    config = KDConfig

    def __init__(self, kd_cfg: Any, cfg: Any, num_classes: int, epochs: int):
        super().__init__(kd_cfg, None, None)
        self.adaptive = cfg
        make = GlobalTemperature if cfg.temperature == "global" else InstanceTemperature
        self.temperature = make(num_classes)
        self.epoch, self.epochs = 0, epochs
        self.register_buffer("history", torch.zeros(epochs, 5))
        self.history[:, 3] = math.inf
        self.history[:, 4] = -math.inf

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.history[epoch, 0] = self.strength()

    def strength(self) -> float:
        c = self.adaptive
        return curriculum_strength(self.epoch, c.curriculum_epochs, c.lambda_min, c.lambda_max)

    def current_temperature(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        c = self.adaptive
        raw = reverse_gradient(self.temperature(student_logits, teacher_logits), self.strength())
        return c.min_temperature + (c.max_temperature - c.min_temperature) * torch.sigmoid(raw)

    def forward(self, student, teacher, batch):
        t = self.current_temperature(student.logits, teacher.logits)
        w = sample_weights(self.adaptive.weighting, student.logits, teacher.logits, batch.y)
        value = (w * per_sample_kd(student.logits, teacher.logits, t)).mean()
        if self.training:
            with torch.no_grad():
                row = self.history[min(self.epoch, self.epochs - 1)]
                row[1] += t.sum()
                row[2] += t.numel()
                row[3] = torch.minimum(row[3], t.min())
                row[4] = torch.maximum(row[4], t.max())
        return {"kd": self.cfg.alpha * value}

    def temperature_record(self) -> list[dict[str, float]]:
        """Per trained epoch: the reversal strength and the temperature's mean, min and max."""
        rows = []
        for epoch, (strength, total, count, low, high) in enumerate(self.history.tolist()):
            if count:
                rows.append({"epoch": epoch + 1, "grl_lambda": strength, "mean": total / count,
                             "min": low, "max": high})
        return rows
