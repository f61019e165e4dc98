"""nst: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer" (arXiv 1707.01219, 2017).

Each channel's spatial map, flattened and L2-normalised, is one sample of the
layer's "neuron selectivity" distribution; NST minimises the squared MMD
between the student's and the teacher's samples with the polynomial kernel
k(x, y) = (x^T y + c)^d, d = 2, c = 0:
    weight * sum_j [ mean k(t, t') + mean k(s, s') - 2 mean k(s, t) ]   (means over channel pairs)
It is zero when the student's maps equal the teacher's, and widths may differ.
Spatial sizes are matched by average-pooling the larger map.

Defaults are RepDistiller's CIFAR-100 settings: stages 1-3 (its feat[1:-1]) and
weight 50. RepDistiller and mdistiller also average over the batch and keep the
constant teacher-teacher term (detached), as kdrun does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss, match_spatial


def polynomial_kernel(a: Tensor, b: Tensor, degree: float = 2.0, c: float = 0.0) -> Tensor:
    """(B, Ca, N), (B, Cb, N) -> (B, Ca, Cb) of (a_i . b_j + c)^degree."""
    return (a @ b.transpose(1, 2) + c).pow(degree)


def selectivity_mmd(student: Tensor, teacher: Tensor, degree: float = 2.0, c: float = 0.0) -> Tensor:
    """Squared MMD between the L2-normalised channel maps, averaged over the batch."""
    student, teacher = match_spatial(student, teacher)
    s = F.normalize(student.flatten(2), dim=2)
    t = F.normalize(teacher.flatten(2), dim=2)
    return (polynomial_kernel(t, t, degree, c).mean().detach()
            + polynomial_kernel(s, s, degree, c).mean()
            - 2 * polynomial_kernel(s, t, degree, c).mean())


@dataclass
class NSTConfig(LossConfig):
    weight: float = bounded(50.0, gt=0)
    # polynomial kernel d
    degree: float = bounded(2.0, gt=0, why="the polynomial kernel's degree; the paper uses 2")
    c: float = bounded(0.0, ge=0)     # polynomial kernel c
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class NST(StagePairLoss):
    name = "nst"
    config = NSTConfig

    def forward(self, student, teacher, batch):
        pairs = zip(*self.stages(student, teacher))
        total = sum(selectivity_mmd(s, t, self.cfg.degree, self.cfg.c) for s, t in pairs)
        return {"nst": self.cfg.weight * total}
