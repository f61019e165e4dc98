"""dkd: Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation" (CVPR 2022).

Hinton's KD splits into a target-class and a non-target-class part (paper, Eq. 1):
    KD = TCKD + (1 - p_t^target) * NCKD
TCKD = KL(b_t || b_s) on the binary [p_target, 1 - p_target]; NCKD = KL(p^_t || p^_s)
on the K - 1 non-target classes renormalised. DKD frees the coupling:
    alpha * T^2 * TCKD + beta * T^2 * NCKD   (batchmean), plus CE with weight 1,
with alpha = 1, beta = 8, T = 4 and a linear warm-up of the DKD terms over the first
20 epochs (the paper's CIFAR-100 setting; mdistiller's CFG.DKD defaults).

Peers differ: mdistiller tunes beta per pair (2 for resnet56->resnet20, 6 for
vgg13->vgg8 and wrn_40_2->wrn_16_2, 8 otherwise), takes log of the binary
probabilities directly and drops the target class by subtracting 1000 from its
logit; kdrun gathers the non-target columns and works in log space throughout,
which is the same value without the underflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def _binary_log_probs(log_p: Tensor, target_mask: Tensor) -> Tensor:
    """(B, K) log-probabilities -> (B, 2) log [p_target, 1 - p_target]."""
    log_target = log_p[target_mask]
    log_rest = log_p.masked_fill(target_mask, float("-inf")).logsumexp(dim=1)
    return torch.stack([log_target, log_rest], dim=1)


def dkd_terms(student_logits: Tensor, teacher_logits: Tensor, target: Tensor,
              temperature: float) -> tuple[Tensor, Tensor]:
    """(T^2 * TCKD, T^2 * NCKD), each averaged over the batch."""
    b, k = student_logits.shape
    z_s, z_t = student_logits / temperature, teacher_logits / temperature
    target_mask = F.one_hot(target, k).bool()
    tckd = F.kl_div(_binary_log_probs(F.log_softmax(z_s, dim=1), target_mask),
                    _binary_log_probs(F.log_softmax(z_t, dim=1), target_mask),
                    reduction="batchmean", log_target=True)
    others = ~target_mask
    nckd = F.kl_div(F.log_softmax(z_s[others].view(b, k - 1), dim=1),
                    F.log_softmax(z_t[others].view(b, k - 1), dim=1),
                    reduction="batchmean", log_target=True)
    return tckd * temperature**2, nckd * temperature**2


@dataclass
class DKDConfig(LossConfig):
    warmup_epochs: int = bounded(20, ge=0)  # DKD terms ramp in linearly over 20 epochs
    alpha: float = bounded(1.0, ge=0)  # weight of TCKD
    beta: float = bounded(8.0, ge=0)  # weight of NCKD
    temperature: float = bounded(4.0, gt=0,
                                 why="the softmax temperature; the paper uses 4 on CIFAR-100")
    ce_weight: float = bounded(1.0, ge=0)  # weight of the engine's label cross-entropy


@register_loss
class DKD(DistillationLoss):
    name = "dkd"
    config = DKDConfig


    @classmethod
    def ce_scale(cls, cfg):
        return cfg.ce_weight

    def forward(self, student, teacher, batch):
        tckd, nckd = dkd_terms(student.logits, teacher.logits, batch.y, self.cfg.temperature)
        return {"dkd_tckd": self.cfg.alpha * tckd, "dkd_nckd": self.cfg.beta * nckd}
