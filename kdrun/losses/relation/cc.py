"""cc: Peng et al., "Correlation Congruence for Knowledge Distillation" (ICCV 2019).

The student matches the teacher's correlations between the instances of a batch:
    beta * ||psi(f_s) - psi(f_t)||_F^2 / b^2,
    psi(f)_ij = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (f_i . f_j)^p,
the P-order Taylor expansion of the Gaussian RBF exp(-gamma ||f_i - f_j||^2) for
L2-normalised f, with P = 2 and gamma = 0.4 (the values torchdistill's and AberHu's
ports of the paper's kernel use). f is a learned linear embedding (feat_dim = 128)
of each model's pre-logit vector, as in RepDistiller and torchdistill (both heads train
with the loss); feat_dim = 0 uses the vectors as they are. beta = 0.02 is RepDistiller's
CIFAR-100 weight; it was tuned for their surrogate below, so sweep it when running the
paper's kernel.

Peers differ: RepDistiller's `Correlation` (code the authors emailed) is a surrogate,
mean_i sum_d |d_i,d * d_i+1,d| with d = f_s - f_t, not the kernel; torchdistill
divides the unsquared Frobenius norm by b^2; AberHu's KD-Zoo uses no embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def correlation_matrix(f: Tensor, gamma: float, p_order: int) -> Tensor:
    """(B, D) -> (B, B) Taylor-approximated Gaussian RBF kernel of the L2-normalised rows."""
    f = F.normalize(f.flatten(1), dim=1)
    sim = f @ f.t()
    terms = [math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim.pow(p)
             for p in range(p_order + 1)]
    return sum(terms)


def correlation_congruence(student: Tensor, teacher: Tensor, gamma: float, p_order: int) -> Tensor:
    b = student.shape[0]
    diff = correlation_matrix(student, gamma, p_order) - correlation_matrix(teacher, gamma, p_order)
    return diff.pow(2).sum() / b**2


@dataclass
class CCConfig(LossConfig):
    beta: float = bounded(0.02, gt=0)  # weight of L_CC (RepDistiller's CIFAR-100 value)
    gamma: float = bounded(0.4, gt=0, why="the RBF width; the paper uses 0.4")  # RBF width (paper)
    p_order: int = bounded(2, ge=1)  # Taylor order P (paper)
    # learned linear embedding; 0 = use ModelOutput.embedding
    feat_dim: int = bounded(128, ge=0, why="0 uses ModelOutput.embedding")


@register_loss
class CC(DistillationLoss):
    name = "cc"
    config = CCConfig
    requires = ("embedding",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        if cfg.feat_dim > 0:
            self.embed_s = nn.Linear(student.embedding.flatten(1).shape[1], cfg.feat_dim)
            self.embed_t = nn.Linear(teacher.embedding.flatten(1).shape[1], cfg.feat_dim)
        else:
            self.embed_s, self.embed_t = nn.Identity(), nn.Identity()

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.p_order < 0:
            raise ConfigError(f"{cls.key('p_order')}={cfg.p_order} must be >= 0 (Taylor order; "
                              "the paper uses 2)")
        if cfg.feat_dim < 0:
            raise ConfigError(f"{cls.key('feat_dim')}={cfg.feat_dim} must be >= 0 "
                              "(0 = no embedding head)")

    def forward(self, student, teacher, batch):
        s = self.embed_s(student.embedding.flatten(1))
        t = self.embed_t(teacher.embedding.flatten(1).detach())
        return {"cc": self.cfg.beta * correlation_congruence(s, t, self.cfg.gamma, self.cfg.p_order)}
