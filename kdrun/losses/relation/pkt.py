"""pkt: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer" (ECCV 2018).

Each model's pre-logit embeddings define conditional probabilities over the batch
with the cosine-similarity kernel K(a, b) = (a.b / (|a||b|) + 1) / 2:
    p_{j|i} = K(x_i, x_j) / sum_k K(x_i, x_k)
and the student minimises KL(teacher || student), averaged over all b^2 pairs:
    weight * sum_i sum_j p^t_{j|i} log(p^t_{j|i} / p^s_{j|i}) / b^2.
By default (self_pairs: keep) this is the authors' released code, which RepDistiller,
torchdistill and AberHu's KD-Zoo use: the self-pairs (the diagonal, K = 1) stay in the
normaliser and in the KL, and the KL is the mean over all b^2 entries. weight = 30000
is RepDistiller's CIFAR-100 setting, tuned on that form (the paper has no
classification weight).

Peers differ: the paper writes the sums over j != i (self-pairs excluded) and does not
normalise; self_pairs: drop gives that form (zeroed diagonal in the normaliser and the
KL), still divided by b^2 so that the weight carries over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


SELF_PAIRS = ("keep", "drop")


def conditional_probabilities(f: Tensor, self_pairs: str = "keep") -> Tensor:
    """(B, D) -> (B, B): row i is p_{j|i} under the cosine kernel; with self_pairs="drop"
    the diagonal is 0 (left out of the normaliser)."""
    f = F.normalize(f.flatten(1), dim=1)
    k = (f @ f.t() + 1) / 2
    if self_pairs == "drop":
        k = k * (1 - torch.eye(f.shape[0], dtype=f.dtype, device=f.device))
    return k / k.sum(1, keepdim=True).clamp_min(1e-12)


def probabilistic_transfer(student: Tensor, teacher: Tensor, self_pairs: str = "keep",
                           eps: float = 1e-7) -> Tensor:
    p_s = conditional_probabilities(student, self_pairs)
    p_t = conditional_probabilities(teacher, self_pairs)
    b = student.shape[0]
    kl = p_t * (torch.log(p_t + eps) - torch.log(p_s + eps))    # drop: 0 on the diagonal
    return kl.sum() / b**2


@dataclass
class PKTConfig(LossConfig):
    weight: float = bounded(30000.0, gt=0)  # RepDistiller's CIFAR-100 weight (see the docstring)
    self_pairs: str = "keep"          # keep (the authors' code) | drop (the paper's sums, j != i)


@register_loss
class PKT(DistillationLoss):
    name = "pkt"
    config = PKTConfig
    requires = ("embedding",)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.self_pairs not in SELF_PAIRS:
            raise ConfigError(f"{cls.key('self_pairs')}={cfg.self_pairs}: use keep (the authors' "
                              "code, the diagonal in the normaliser and the KL) or drop (the paper's j != i)")

    def forward(self, student, teacher, batch):
        value = probabilistic_transfer(student.embedding, teacher.embedding.detach(), self.cfg.self_pairs)
        return {"pkt": self.cfg.weight * value}
