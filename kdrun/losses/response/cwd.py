"""cwd: Shu, Liu, Gao, Yan & Shen, "Channel-wise Knowledge Distillation for Dense Prediction"
(ICCV 2021).

Each channel c of a (B, C, H, W) map becomes a distribution over its H*W positions,
softmax(y_c / T); the student matches the teacher's channel by channel:
    weight * T^2 / (B * C) * sum_{b,c} KL(p_t(b, c, .) || p_s(b, c, .))
so each channel's most activated region (for logits: where the class is) dominates. By
default the maps are the logits (C = classes), the authors' first command, with their
Cityscapes values T = 4 and weight 3 (`bash exp_cwd.sh channel kl 3 4 ...` in
irfanICMLL/TorchDistiller). `feature: i` distils features[i] instead, through a 1x1 conv +
BN connector to the teacher's channels and size (the paper's feature variant).
The normalisation by B * C is the authors' (KLDivLoss(sum) / (n * c) * T^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.registry import register_loss
from kdrun.losses.response.pixel_kd import same_size
from kdrun.losses.stages import pick_stage


def channel_kl(student_map: Tensor, teacher_map: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(p_t || p_s) of the per-channel spatial softmax, averaged over batch and channels."""
    log_p_s = F.log_softmax(student_map.flatten(2) / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_map.flatten(2) / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * temperature**2


@dataclass
class CWDConfig(LossConfig):
    temperature: float = bounded(4.0, gt=0, why="the authors use 4 on logits")
    weight: float = bounded(3.0, ge=0)
    # null: the logits; i: features[i] of both models (negative counts from the last)
    feature: Optional[int] = bounded(None, free="a stage index, checked against the models")


@register_loss
class CWD(DistillationLoss):
    name = "cwd"
    config = CWDConfig
    tasks = ("segmentation",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.connector = nn.Identity()
        if cfg.feature is not None and student is not None and teacher is not None:
            self.connector = ConvConnector(self._map(student), self._map(teacher))

    def _map(self, out) -> Tensor:
        if self.cfg.feature is None:
            return out.logits
        return pick_stage(out.features, self.cfg.feature, self.key("feature"))

    def forward(self, student, teacher, batch):
        s = self.connector(self._map(student))
        t = same_size(self._map(teacher), s)
        return {"cwd": self.cfg.weight * channel_kl(s, t, self.cfg.temperature)}
