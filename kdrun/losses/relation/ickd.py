"""ickd: Liu, Huang, Lin, Xie, Wang, Chang & Liang, "Exploring Inter-Channel Correlation
for Diversity-preserved Knowledge Distillation" (ICCV 2021).

The inter-channel correlation of a map F (c x hw) is G = F F^T with each row
L2-normalised; the student's last-stage map first passes a connector (1x1 conv + BN
to the teacher's width) and then matches the teacher's G:
    beta * sum ||G_s - G_t||^2 / (c b),
the normalisation of the authors' CIFAR-100 code, with beta = 2.5 (their CIFAR-100
command and README; the KD term is optional: add loss=[ickd,kd] for "ICKD-C").
Stages: the last conv stage of both models (the authors' feat[-2] in RepDistiller's
feature list).

Not included: the grid-level variant the paper uses on large maps (ImageNet,
segmentation). Peers differ: torchdistill's ChSimLoss (its ICKD port) uses weight 500
on ImageNet with its own reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StageLoss


def channel_correlation(feature: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix over positions, rows L2-normalised."""
    f = feature.flatten(2)
    return F.normalize(f @ f.transpose(1, 2), dim=2)


def inter_channel_loss(student: Tensor, teacher: Tensor) -> Tensor:
    b, c = teacher.shape[:2]
    return (channel_correlation(student) - channel_correlation(teacher)).pow(2).sum() / (c * b)


@dataclass
class ICKDConfig(LossConfig):
    beta: float = bounded(2.5, gt=0)  # authors' CIFAR-100 setting
    student_stage: int = bounded(-1, free="stage indices, checked against the models when the loss is built")
    teacher_stage: int = bounded(-1, free="stage indices, checked against the models when the loss is built")


@register_loss
class ICKD(StageLoss):
    name = "ickd"
    config = ICKDConfig

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.connector = ConvConnector(self.student_stage(student), self.teacher_stage(teacher))

    def forward(self, student, teacher, batch):
        s = self.connector(self.student_stage(student))
        t = self.teacher_stage(teacher).detach()
        return {"ickd": self.cfg.beta * inter_channel_loss(s, t)}
