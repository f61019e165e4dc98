"""fsp: Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization,
Network Minimization and Transfer Learning" (CVPR 2017).

The "flow of solution procedure" between two stages is the Gram matrix of their maps,
    G(x)_ij = sum_{s,t} F1_{s,t,i}(x) F2_{s,t,j}(x) / (h w),
and the student matches the teacher's G for each consecutive pair of the chosen stages
(the input and output of each stage group in the paper). Within a pair the larger map
is average-pooled to the smaller one. Training has two stages (paper):
stage 1 trains the student on the FSP loss alone (`init_epochs`, run by the engine's
pre-training hook), stage 2 is ordinary training without it; `keep_in_main` keeps
the FSP term in stage 2 as well.

Defaults: equal lambda for every pair (paper); the paper gives no lambda value nor a
per-entry normalisation, so kdrun averages over the C1 x C2 entries and the batch
with lambda = 1 (RepDistiller's MSE); init_epochs = 30 is RepDistiller's CIFAR
setting. Pairs of different widths (cross-architecture) go through 1x1 connectors,
trained with the student in stage 1 (not in the paper, which pairs equal widths).

Peers differ: sseung0703's TensorFlow FSP max-pools and divides the summed squares by
2 * sum C1 C2; RepDistiller uses adaptive average pooling and an MSE per pair, as here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.relation.stage_adapters import channel_adapters
from kdrun.losses.stages import StagePairLoss, match_spatial


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """(B, C1, H, W), (B, C2, H', W') -> (B, C1, C2), the larger map pooled to the smaller."""
    first, second = match_spatial(first, second)
    h, w = first.shape[-2:]
    return first.flatten(2) @ second.flatten(2).transpose(1, 2) / (h * w)


def fsp_loss(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
    """Sum over consecutive stage pairs of the mean squared difference of the FSP matrices."""
    total = 0
    for i in range(len(student) - 1):
        g_s = fsp_matrix(student[i], student[i + 1])
        g_t = fsp_matrix(teacher[i], teacher[i + 1])
        total = total + (g_s - g_t).pow(2).mean()
    return total


@dataclass
class FSPConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)  # lambda_i, equal for every pair (paper)
    init_epochs: int = bounded(30, ge=0)  # stage 1: FSP alone (RepDistiller's CIFAR length)
    keep_in_main: bool = False        # paper: stage 2 trains without FSP
    student_stages: List[int] = bounded(factory=lambda: [-4, -3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-4, -3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class FSP(StagePairLoss):
    name = "fsp"
    config = FSPConfig
    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.checked_stages(student, teacher)
        self.adapters = channel_adapters(s, t)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if len(cfg.student_stages) < 2:
            raise ConfigError(f"{cls.key('student_stages')}={list(cfg.student_stages)}: FSP needs "
                              "at least two stages (it relates consecutive ones)")
        if cfg.init_epochs == 0 and not cfg.keep_in_main:
            raise ConfigError(f"{cls.key('init_epochs')}=0 with {cls.key('keep_in_main')}=false "
                              "never applies FSP: set init_epochs > 0 (paper) or keep_in_main=true")

    @property
    def pretrain_epochs(self) -> int:
        return self.cfg.init_epochs

    def fsp_term(self, student, teacher) -> dict[str, Tensor]:
        s, t = self.stages(student, teacher)
        s = [adapt(f) for adapt, f in zip(self.adapters, s)]
        t = [f.detach() for f in t]
        return {"fsp": self.cfg.weight * fsp_loss(s, t)}

    def pretrain_terms(self, student, teacher, batch):
        return self.fsp_term(student, teacher)

    def forward(self, student, teacher, batch):
        return self.fsp_term(student, teacher) if self.cfg.keep_in_main else {}
