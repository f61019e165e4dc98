"""pkt: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer" (ECCV 2018).

Each model's pre-logit embeddings define conditional probabilities over the batch
with the cosine-similarity kernel K(a, b) = (a.b / (|a||b|) + 1) / 2:
    p_{j|i} = K(x_i, x_j) / sum_{k != i} K(x_i, x_k)      (self-pairs excluded, as in the paper)
and the student minimises KL(teacher || student) summed over i and j != i:
    weight * sum_i sum_{j != i} p^t_{j|i} log(p^t_{j|i} / p^s_{j|i}) / b^2.
The paper sums without normalising; dividing by b^2 makes weight = 30000, the
RepDistiller CIFAR-100 setting, carry over (the paper has no classification weight).

Peers differ: the authors' released code (used by RepDistiller, torchdistill and
AberHu's KD-Zoo) keeps the self-pairs (the diagonal) in the normaliser and the KL,
and averages over all b^2 entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.losses.base import DistillationLoss, LossConfig, require_positive
from kdrun.losses.registry import register_loss


def conditional_probabilities(f: Tensor) -> Tensor:
    """(B, D) -> (B, B): row i is p_{j|i} under the cosine kernel; the diagonal is 0."""
    f = F.normalize(f.flatten(1), dim=1)
    off_diagonal = 1 - torch.eye(f.shape[0], dtype=f.dtype, device=f.device)
    k = (f @ f.t() + 1) / 2 * off_diagonal
    return k / k.sum(1, keepdim=True).clamp_min(1e-12)


def probabilistic_transfer(student: Tensor, teacher: Tensor, eps: float = 1e-7) -> Tensor:
    p_s, p_t = conditional_probabilities(student), conditional_probabilities(teacher)
    b = student.shape[0]
    kl = p_t * (torch.log(p_t + eps) - torch.log(p_s + eps))    # 0 on the diagonal
    return kl.sum() / b**2


@dataclass
class PKTConfig(LossConfig):
    knowledge: str = "relation"
    weight: float = 30000.0           # RepDistiller's CIFAR-100 weight (see the docstring)


@register_loss
class PKT(DistillationLoss):
    name = "pkt"
    knowledge = "relation"
    config = PKTConfig
    requires = ("embedding",)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        require_positive(cls, cfg, "weight")

    def forward(self, student, teacher, batch):
        value = probabilistic_transfer(student.embedding, teacher.embedding.detach())
        return {"pkt": self.cfg.weight * value}
