"""ls: label smoothing, Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the
Inception Architecture for Computer Vision" (CVPR 2016), Sec. 7.

The one-hot target is mixed with the uniform distribution u over K classes,
q' = (1 - epsilon) * onehot(y) + epsilon * u, so that
    CE(q', p_s) = (1 - epsilon) * CE(y, p_s) + epsilon * CE(u, p_s).
kdrun puts 1 - epsilon on the engine's label cross-entropy (ce_scale) and returns
the second part as the term "ls" = epsilon * mean_i(-1/K sum_k log p_s[i, k]); their
sum is exactly label-smoothed cross-entropy (torch's label_smoothing=epsilon).
epsilon = 0.1 as in the paper. No teacher: it is the regularisation baseline that
Yuan, Tay, Li, Wang & Feng ("Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020) read as KD from a uniform virtual teacher.

Combined with kd (loss=[ls,kd]) the engine's CE weight is (1 - epsilon)(1 - alpha)
while this term keeps its epsilon: each method's weight stands on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def uniform_cross_entropy(logits: Tensor) -> Tensor:
    """CE(u, softmax(z)) = -1/K sum_k log p_k, averaged over the batch."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()


@dataclass
class LSConfig(LossConfig):
    # mass moved from the label to the uniform distribution
    epsilon: float = bounded(0.1, ge=0, lt=1, why="it is the label mass spread uniformly "
                                                  "(the paper uses 0.1)")


@register_loss
class LabelSmoothing(DistillationLoss):
    name = "ls"
    config = LSConfig
    needs_teacher = False

    @classmethod
    def ce_scale(cls, cfg):
        return 1.0 - cfg.epsilon

    def forward(self, student, teacher, batch):
        return {"ls": self.cfg.epsilon * uniform_cross_entropy(student.logits)}
