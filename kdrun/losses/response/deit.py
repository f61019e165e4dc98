"""deit: distillation through a distillation token (Touvron et al., "Training data-efficient
image transformers & distillation through attention", ICML 2021).

A ViT student carries a distillation token beside its class token; a second linear head
reads it (owned here, trained with the student) and learns from the teacher, while the class
head learns from the labels (the engine's CE):
    hard (DeiT's default): L = 1/2 CE(Z_cls, y) + 1/2 CE(Z_dist, argmax Z_t)
    soft:                  L = (1 - lambda) CE(Z_cls, y) + lambda tau^2 KL(softmax(Z_t/tau) || softmax(Z_dist/tau))
(the paper's soft setting: lambda = 0.1, tau = 3). At test time the student predicts with the
mean of both heads' softmax outputs ("we add the softmax output by the two classifiers").

Needs a student whose last feature holds the class and distillation tokens' states (B, 2, D):
student=deit_tiny (kdrun/models/zoo/deit.py). Peers differ: timm's VisionTransformerDistilled
averages the two heads' logits at test time, not their probabilities (argmax may differ);
the authors' code (facebookresearch/deit, losses.py) sums the KL over the batch and divides by
the number of logits (batch x classes), where this mean over the batch is their value x classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.response.kd import soft_kl

MODES = ("hard", "soft")


def hard_distillation(dist_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """CE of the distillation head on the teacher's hard decision argmax Z_t."""
    return F.cross_entropy(dist_logits, teacher_logits.argmax(-1))


def mean_of_heads(cls_logits: Tensor, dist_logits: Tensor) -> Tensor:
    """log of the mean of both heads' softmax: logits whose argmax is DeiT's prediction."""
    both = torch.stack([F.log_softmax(cls_logits, -1), F.log_softmax(dist_logits, -1)])
    return torch.logsumexp(both, 0) - math.log(2)


@dataclass
class DeiTConfig(LossConfig):
    mode: str = "hard"                # hard | soft
    # soft: the weight lambda of the KL term (the class head's CE gets 1 - lambda)
    lam: float = bounded(0.1, ge=0, le=1, why="soft mode's KL weight; the CE gets 1 - lam")
    temperature: float = bounded(3.0, gt=0)   # soft mode's tau


@register_loss
class DeiTDistillation(DistillationLoss):
    name = "deit"
    config = DeiTConfig
    requires = ("logits", "features")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        tokens = student.features[-1]
        if tokens.dim() != 3 or tokens.shape[1] != 2:
            raise ConfigError(f"loss=deit needs a ViT student with a distillation token (its last "
                              f"feature (B, 2, D): class and distillation tokens), got "
                              f"{tuple(tokens.shape)}: use student=deit_tiny")
        self.head_dist = nn.Linear(tokens.shape[-1], student.logits.shape[-1])

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.mode not in MODES:
            raise ConfigError(f"{cls.key('mode')}={cfg.mode}: use hard or soft")

    @classmethod
    def ce_scale(cls, cfg) -> float:
        return 0.5 if cfg.mode == "hard" else 1.0 - cfg.lam

    def dist_logits(self, student) -> Tensor:
        return self.head_dist(student.features[-1][:, 1])

    def student_logits(self, student) -> Tensor:
        return mean_of_heads(student.logits, self.dist_logits(student))

    def forward(self, student, teacher, batch):
        dist, target = self.dist_logits(student), teacher.logits.detach()
        if self.cfg.mode == "hard":
            return {"deit": 0.5 * hard_distillation(dist, target)}
        return {"deit": self.cfg.lam * soft_kl(dist, target, self.cfg.temperature)}
