"""kdsvd: Lee, Kim & Song, "Self-supervised Knowledge Distillation Using Singular Value
Decomposition" (ECCV 2018).

Each chosen stage map, reshaped to (h w) x c, is compressed by a truncated SVD to its
k leading right singular vectors V (k = 1 in the authors' CIFAR-100 code). Their
sign and order are ambiguous, so, as the authors do, every teacher vector is paired
with the student candidate (k + 1 of them) of largest |cosine|, the teacher vector's
sign is flipped to agree with it, and both are scaled by the teacher's L2-normalised
singular values. Consecutive stages l-1, l are then related by a radial basis function
over all element pairs, RBF(a, b) = exp(-(a - b)^2 / 8), and the student matches the
teacher's RBF maps:
    weight * sqrt(k) / 2 * sum_l ||RBF(V_s^l, V_s^l-1) - RBF(V_t^l, V_t^l-1)||^2   (batch mean)
The gradient through the SVD drops vanishing-gap terms as the authors' custom
gradient does (see truncated_svd.py), so rank-deficient maps give no NaN.

Not reproduced: the authors' training clips the distillation gradient to the norm of
the cross-entropy gradient and ramps it in with sigmoid(epoch - 2); kdrun sums terms,
so `weight` (1, no paper value) plays that role. The authors sum over the batch;
kdrun averages (RepDistiller too). Stage pairs of different widths pass through 1x1
connectors (the paper pairs equal widths). RepDistiller keeps k + 3 student
candidates and flips the student instead of the teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.relation.stage_adapters import channel_adapters
from kdrun.losses.relation.truncated_svd import leading_right_singular_vectors
from kdrun.losses.stages import StagePairLoss


def _as_matrix(feature: Tensor) -> Tensor:
    return feature.flatten(2).transpose(1, 2)            # (B, H*W, C)


def aligned_singular_vectors(student: Tensor, teacher: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Stage maps -> (V_s, V_t), each (B, C, k), matched, sign-aligned and weighted."""
    x_s, x_t = _as_matrix(student), _as_matrix(teacher)
    with torch.no_grad():
        _, s_t, vh_t = torch.linalg.svd(x_t, full_matrices=False)
    v_t, s_t = vh_t[:, :k].transpose(1, 2), s_t[:, :k]
    candidates = min(k + 1, *x_s.shape[1:])
    v_s = leading_right_singular_vectors(x_s, candidates)              # (B, C, k+1)
    best = (v_s.transpose(1, 2) @ v_t).abs().argmax(1)                 # (B, k) student index
    v_s = v_s.gather(2, best.unsqueeze(1).expand(-1, v_s.shape[1], -1))
    sign = torch.where((v_s.detach() * v_t).sum(1, keepdim=True) >= 0, 1.0, -1.0)
    weight = F.normalize(s_t, dim=1).unsqueeze(1)
    return v_s * weight, v_t * sign * weight


def rbf_map(later: Tensor, earlier: Tensor) -> Tensor:
    """(B, C2, k), (B, C1, k) -> (B, C2, C1, k): exp(-(a - b)^2 / 8) over all element pairs."""
    return torch.exp(-(later.unsqueeze(2) - earlier.unsqueeze(1)).pow(2) / 8)


def kdsvd_loss(student: Sequence[Tensor], teacher: Sequence[Tensor], k: int) -> Tensor:
    vectors = [aligned_singular_vectors(s, t, k) for s, t in zip(student, teacher)]
    total = 0
    for (s_prev, t_prev), (s_cur, t_cur) in zip(vectors, vectors[1:]):
        diff = rbf_map(s_cur, s_prev) - rbf_map(t_cur, t_prev)
        total = total + diff.pow(2).flatten(1).sum(1).mean() * math.sqrt(k) / 2
    return total


@dataclass
class KDSVDConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    # k, singular vectors kept per stage (authors' code)
    num_vectors: int = bounded(1, gt=0, why="the paper keeps 1 singular vector per stage")
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class KDSVD(StagePairLoss):
    name = "kdsvd"
    config = KDSVDConfig
    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.checked_stages(student, teacher)
        rank = min(min(f.shape[1], f.shape[2] * f.shape[3]) for f in t)
        if cfg.num_vectors > rank:
            raise ConfigError(f"{self.key('num_vectors')}={cfg.num_vectors} exceeds the rank of the "
                              f"chosen teacher stages (min(h*w, c) = {rank}); lower it")
        self.adapters = channel_adapters(s, t)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if len(cfg.student_stages) < 2:
            raise ConfigError(f"{cls.key('student_stages')}={list(cfg.student_stages)}: KD-SVD "
                              "relates consecutive stages, so it needs at least two")

    def forward(self, student, teacher, batch):
        s, t = self.stages(student, teacher)
        s = [adapt(f) for adapt, f in zip(self.adapters, s)]
        t = [f.detach() for f in t]
        return {"kdsvd": self.cfg.weight * kdsvd_loss(s, t, self.cfg.num_vectors)}
