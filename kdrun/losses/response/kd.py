"""kd: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

The student matches the teacher's temperature-softened class distribution:
    alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))   (batchmean)
and the engine weighs the label cross-entropy by 1 - alpha. The T^2 factor keeps
gradient magnitudes comparable across temperatures, as the paper prescribes.

Peers differ: torchdistill 1.1.5's KDLoss puts alpha on the cross-entropy
(its alpha is our 1 - alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.losses.base import DistillationLoss, LossConfig, require_positive, require_unit_interval
from kdrun.losses.registry import register_loss


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(p_t || p_s) of the softened distributions, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


@dataclass
class KDConfig(LossConfig):
    knowledge: str = "response"
    temperature: float = 4.0
    alpha: float = 0.9                # weight of the distillation term; CE gets 1 - alpha


@register_loss
class KD(DistillationLoss):
    name = "kd"
    knowledge = "response"
    config = KDConfig

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        require_positive(cls, cfg, "temperature", "the softmax temperature; Hinton uses 1-20, 4 is common")
        require_unit_interval(cls, cfg, "alpha")

    @classmethod
    def ce_scale(cls, cfg):
        return 1.0 - cfg.alpha

    def forward(self, student, teacher, batch):
        kd = soft_kl(student.logits, teacher.logits, self.cfg.temperature)
        return {"kd": self.cfg.alpha * kd}
