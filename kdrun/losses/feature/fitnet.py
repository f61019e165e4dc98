"""fitnet: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

A regressor maps the student's guided layer onto the teacher's hint layer and
the squared error between them is the hint loss. The regressor is a 1x1 conv +
BN sized by a dummy forward (the paper's convolutional regressor), so any stage
pair of any two families fits. Default stages: index 2 of both models (the
middle stage of the CIFAR nets, as in the CRD benchmark); weight 100 as there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdrun.losses.base import DistillationLoss, LossConfig, require_positive
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import pick_stages


@dataclass
class FitNetConfig(LossConfig):
    knowledge: str = "feature"
    weight: float = 100.0
    student_stage: int = 2            # guided layer (index into ModelOutput.features)
    teacher_stage: int = 2            # hint layer


@register_loss
class FitNet(DistillationLoss):
    name = "fitnet"
    knowledge = "feature"
    config = FitNetConfig
    requires = ("features",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        (s,) = pick_stages(student.features, [cfg.student_stage], self.key("student_stage"))
        (t,) = pick_stages(teacher.features, [cfg.teacher_stage], self.key("teacher_stage"))
        self.regressor = ConvConnector(s, t)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        require_positive(cls, cfg, "weight")

    def forward(self, student, teacher, batch):
        s = self.regressor(student.features[self.cfg.student_stage])
        t = teacher.features[self.cfg.teacher_stage]
        return {"fitnet": self.cfg.weight * F.mse_loss(s, t)}
