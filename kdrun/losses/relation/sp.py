"""sp: Tung & Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019).

For a batch of b samples, G = A A^T over flattened activations, each row
L2-normalised; the loss is gamma * sum over stage pairs of ||G_s - G_t||_F^2 / b^2
with gamma = 3000 (the paper's CIFAR setting). Only sample-to-sample relations
are compared, so widths and spatial sizes may differ freely.

Peers differ: torchdistill 1.1.5's SPKDLoss normalises Gram rows with p=1; the
paper (and kdrun) use the L2 norm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch.nn.functional as F
from torch import Tensor

from kdrun.losses.base import DistillationLoss, LossConfig, require_positive
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import check_pairing, pick_stages


def similarity_matrix(feature: Tensor) -> Tensor:
    """(B, ...) -> (B, B) row-L2-normalised Gram matrix of the flattened activations."""
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


def similarity_loss(student: Tensor, teacher: Tensor) -> Tensor:
    b = student.shape[0]
    return (similarity_matrix(student) - similarity_matrix(teacher)).pow(2).sum() / b**2


@dataclass
class SPConfig(LossConfig):
    knowledge: str = "relation"
    gamma: float = 3000.0
    student_stages: List[int] = field(default_factory=lambda: [-1])
    teacher_stages: List[int] = field(default_factory=lambda: [-1])


@register_loss
class SP(DistillationLoss):
    name = "sp"
    knowledge = "relation"
    config = SPConfig
    requires = ("features",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        pick_stages(student.features, cfg.student_stages, self.key("student_stages"))
        pick_stages(teacher.features, cfg.teacher_stages, self.key("teacher_stages"))

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        require_positive(cls, cfg, "gamma")
        check_pairing(cfg.student_stages, cfg.teacher_stages, f"loss.{cls.name}")

    def forward(self, student, teacher, batch):
        pairs = zip((student.features[i] for i in self.cfg.student_stages),
                    (teacher.features[i] for i in self.cfg.teacher_stages))
        return {"sp": self.cfg.gamma * sum(similarity_loss(s, t) for s, t in pairs)}
