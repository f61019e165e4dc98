"""ttm: Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching"
(ICLR 2024).

KD without temperature on the student side: the student's own distribution q (T = 1)
matches the teacher's power-transformed distribution
    p^_t = p_t^gamma / sum_k p_t,k^gamma = softmax(gamma * z_t),   gamma = 1 / T
(a power transform is a temperature), i.e.
    beta * KL(p^_t || q)   (batchmean), plus CE with weight 1.
The paper shows TTM = KD + a Renyi-entropy (order 1/T) regulariser on q, so the student
is pushed to less confident outputs. `weighted: true` is WTTM, the paper's sample-adaptive
variant: each sample's KL is weighted by the power sum U_gamma(p_t) = sum_k p_t,k^gamma
(1 for a one-hot teacher, K^(1 - gamma) for a uniform one), so smooth soft targets count more.

Defaults: the authors' README command (vgg13 -> vgg8 on CIFAR-100: --ttm_l 0.1 -b 45
-r 1); gamma = 0.1 is their most common CIFAR-100 value, beta is tuned per pair
(7 to 101 for TTM, 1.4 to 16 for WTTM, their Tables 8-9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def transformed_teacher_kl(student_logits: Tensor, teacher_logits: Tensor, gamma: float,
                           weighted: bool = False) -> Tensor:
    """KL(softmax(gamma z_t) || softmax(z_s)) per sample, times U_gamma(p_t) when weighted;
    averaged over the batch."""
    log_p_hat = F.log_softmax(gamma * teacher_logits, dim=1)
    kl = F.kl_div(F.log_softmax(student_logits, dim=1), log_p_hat, reduction="none",
                  log_target=True).sum(1)
    if weighted:
        kl = kl * (gamma * F.log_softmax(teacher_logits, dim=1)).exp().sum(1)
    return kl.mean()


@dataclass
class TTMConfig(LossConfig):
    gamma: float = bounded(0.1, gt=0, le=1, why="the power gamma = 1/T on the teacher's "
                                                "probabilities; the paper tunes 0.1-0.8")
    beta: float = bounded(45.0, gt=0)  # weight of the KL term (tuned per pair in the paper)
    weighted: bool = False            # WTTM: weight each sample by U_gamma(p_t)


@register_loss
class TTM(DistillationLoss):
    name = "ttm"
    config = TTMConfig

    def forward(self, student, teacher, batch):
        value = transformed_teacher_kl(student.logits, teacher.logits, self.cfg.gamma,
                                       self.cfg.weighted)
        return {"ttm": self.cfg.beta * value}
