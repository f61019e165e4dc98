"""fitnet: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

A regressor maps the student's guided layer onto the teacher's hint layer and
the squared error between them is the hint loss. The regressor is a 1x1 conv +
BN sized by a dummy forward (the paper's convolutional regressor), so any stage
pair of any two families fits. Default stages: index 2 of both models (the
middle stage of the CIFAR nets, as in the CRD benchmark); weight 100 as there.

Training follows the paper's stage-wise training (its Algorithm 1):
1. hint stage (`hint_epochs`): only the student up to and including the guided
   layer, plus the regressor, are trained on weight * ||u_h - r(v_g)||^2 (mean);
   later student layers and the classifier are left untouched. Which parameters
   feed the guided layer is found by autograd on a probe (stage_parameters.py).
2. the whole student is trained without the hint term (the paper's stage 2 is
   KD: use `loss=[fitnet,kd]`); `hint_in_main=true` keeps the hint term there.

Peers differ: RepDistiller and mdistiller have no hint stage and train the hint
term (weight 100) together with CE for the whole run, i.e. `hint_epochs=0
hint_in_main=true` here. hint_epochs=30 is RepDistiller's --init_epochs, the
pre-training budget it gives every other two-stage method (AB, FT, FSP) in the
same CIFAR-100 benchmark (240 main epochs). The paper (maxout nets) gives no
budget that carries over to these nets, and the benchmark's keeps FitNet
comparable with its neighbours in one table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.feature.stage_parameters import parameters_feeding
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StageLoss


@dataclass
class FitNetConfig(LossConfig):
    weight: float = bounded(100.0, gt=0)
    # guided layer (index into ModelOutput.features)
    student_stage: int = bounded(2, free="stage indices, checked against the models when the loss is built")
    # hint layer
    teacher_stage: int = bounded(2, free="stage indices, checked against the models when the loss is built")
    hint_epochs: int = bounded(30, ge=0)  # stage 1: hint training before distillation
    hint_in_main: bool = False        # keep the hint term in stage 2 (RepDistiller) or not (paper)


@register_loss
class FitNet(StageLoss):
    name = "fitnet"
    config = FitNetConfig

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.regressor = ConvConnector(self.student_stage(student), self.teacher_stage(teacher))

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.hint_epochs == 0 and not cfg.hint_in_main:
            raise ConfigError(f"{cls.key('hint_epochs')}=0 with {cls.key('hint_in_main')}=false "
                              "leaves FitNet without any term: set hint_epochs > 0 (the paper's "
                              "hint stage) or hint_in_main=true (RepDistiller's single stage)")

    def hint_loss(self, student, teacher):
        s = self.regressor(self.student_stage(student))
        t = self.teacher_stage(teacher)
        return {"fitnet": self.cfg.weight * F.mse_loss(s, t)}

    @property
    def pretrain_epochs(self):
        return self.cfg.hint_epochs

    def pretrain_terms(self, student, teacher, batch):
        return self.hint_loss(student, teacher)

    def pretrain_parameters(self, student):
        guided = parameters_feeding(student, "features", [self.cfg.student_stage], self.context)
        return [*guided, *self.regressor.parameters()]

    def forward(self, student, teacher, batch):
        return self.hint_loss(student, teacher) if self.cfg.hint_in_main else {}
