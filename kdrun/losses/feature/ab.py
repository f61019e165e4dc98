"""ab: Heo, Lee, Yun, Choi, "Knowledge Transfer via Distillation of Activation Boundaries
Formed by Hidden Neurons" (AAAI 2019).

The student's pre-ReLU responses, through a connector r, learn which side of
the teacher's activation boundaries they lie on, with a margin m = 1:
    sum_i w_i * sum [ (r(s)+m)^2 * 1{r(s) > -m, t <= 0} + (r(s)-m)^2 * 1{r(s) <= m, t > 0} ] / B
over paired stages, deepest w = 1 and halving towards the input. As in the
paper, this is an initialisation: a pre-training stage (`init_epochs`) trains
the connectors and the student up to the deepest transferred stage (found by
autograd, stage_parameters.py) on it, then the student trains normally with no
AB term (the paper then uses KD: `loss=[ab,kd]`).

Reads preact_features (zoo models; timm models have none and fail before
training). Connectors are 1x1 conv + BN where shapes differ (none where they
match), as in the authors' code. weight = 3/1000 of the per-sample sum and the
halving stage weights are the authors' CIFAR code (RepDistiller copies both).

Peers differ: RepDistiller trains the connectors and all non-classifier student
modules for --init_epochs 30 (our default) and then CE only (its AB row uses
-a 0). The authors' code initialises the whole student, classifier included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.connectors import ConvConnector
from kdrun.losses.feature.stage_parameters import parameters_feeding
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss


def boundary_loss(student: Tensor, teacher: Tensor, margin: float) -> Tensor:
    """Summed margin loss of pre-ReLU student responses against the teacher's signs."""
    off = ((student > -margin) & (teacher <= 0)).float()
    on = ((student <= margin) & (teacher > 0)).float()
    return ((student + margin).pow(2) * off + (student - margin).pow(2) * on).sum()


@dataclass
class ABConfig(LossConfig):
    margin: float = bounded(1.0, gt=0)
    weight: float = bounded(3e-3, gt=0)  # on the per-sample sum (authors' CIFAR code: / 1000 * 3)
    # the initialisation stage (RepDistiller's --init_epochs)
    init_epochs: int = bounded(30, gt=0,
                               why="AB is an initialisation; without it the method adds "
                                "nothing (RepDistiller uses 30)")
    # listed shallow to deep: the last pair weighs 1, each earlier one half the next
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class AB(StagePairLoss):
    name = "ab"
    config = ABConfig
    requires = ("preact_features",)
    stage_field = "preact_features"

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.checked_stages(student, teacher)
        self.connectors = nn.ModuleList(
            nn.Identity() if a.shape[1:] == b.shape[1:] else ConvConnector(a, b) for a, b in zip(s, t))

    @property
    def pretrain_epochs(self):
        return self.cfg.init_epochs

    def pretrain_terms(self, student, teacher, batch):
        pairs = list(zip(*self.stages(student, teacher)))
        n = len(pairs)
        total = sum(2.0 ** (i - n + 1) * boundary_loss(conn(s), t, self.cfg.margin)
                    for i, ((s, t), conn) in enumerate(zip(pairs, self.connectors)))
        return {"ab": self.cfg.weight * total / pairs[0][0].shape[0]}

    def pretrain_parameters(self, student):
        stages = parameters_feeding(student, "preact_features", self.cfg.student_stages, self.context)
        return [*stages, *self.connectors.parameters()]

    def forward(self, student, teacher, batch):
        return {}  # after the initialisation the student trains on CE (+ KD when selected)
