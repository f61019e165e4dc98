"""sp: Tung & Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019).

For a batch of b samples, G = A A^T over flattened activations, each row
L2-normalised; the loss is gamma * sum over stage pairs of ||G_s - G_t||_F^2 / b^2
with gamma = 3000 (the paper's CIFAR setting). Only sample-to-sample relations
are compared, so widths and spatial sizes may differ freely.

Peers differ: torchdistill 1.1.5's SPKDLoss normalises Gram rows with p=1; the
paper (and kdrun) use the L2 norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss


def similarity_matrix(feature: Tensor) -> Tensor:
    """(B, ...) -> (B, B) row-L2-normalised Gram matrix of the flattened activations."""
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


def similarity_loss(student: Tensor, teacher: Tensor) -> Tensor:
    b = student.shape[0]
    return (similarity_matrix(student) - similarity_matrix(teacher)).pow(2).sum() / b**2


@dataclass
class SPConfig(LossConfig):
    gamma: float = bounded(3000.0, gt=0)
    student_stages: List[int] = bounded(factory=lambda: [-1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-1], free="stage indices, checked against the models when the loss is built")


@register_loss
class SP(StagePairLoss):
    name = "sp"
    config = SPConfig

    def forward(self, student, teacher, batch):
        pairs = zip(*self.stages(student, teacher))
        return {"sp": self.cfg.gamma * sum(similarity_loss(s, t) for s, t in pairs)}
