"""attention: self-attention distribution transfer between language models.

MiniLM (Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
Compression of Pre-Trained Transformers", NeurIPS 2020): the student's last layer
matches the teacher's last-layer attention distributions, row by row,
    mean over heads a and queries t of KL(A^T_{a,t} || A^S_{a,t}),
which needs no projection, so widths may differ. MiniLM requires equal head counts;
to pair any two models the probabilities are averaged over heads first:
    KL(mean_a A^T_{a,t} || mean_a A^S_{a,t}).
A head mean is still a distribution over keys, and by the joint convexity of KL it is
at most MiniLM's per-head mean when the head counts agree (the two are equal when
every head of each model attends alike). It transfers where a token looks, not
which head looks there.

Only query rows whose token is counted (batch.y != IGNORE_INDEX) enter the mean; each
row is the causal one, whose probabilities already sum to 1 over the visible keys
(future and padding keys are 0 in both models and add nothing). Under task=embed the rows
are a sentence's real tokens (batch.mask) and each is bidirectional: padding keys are
masked to 0 in both encoders, so the same KL holds. layer_map pairs blocks
as in kdrun.losses.feature.hidden; the default [[-1, -1]] is MiniLM's last <-> last, an
empty list the uniform mapping. Term: weight * mean over pairs.

Peers differ: MiniLM also transfers value relations (softmax of V V^T / sqrt(d)),
which needs values that ModelOutput does not carry. MiniLMv2 (Wang et al., Findings of
ACL 2021) handles different head counts by re-splitting concatenated queries/keys
into a common number of relation heads and picks an upper-middle teacher layer for
large teachers; the first needs queries and keys, the second is layer_map here.
TinyBERT (Jiao et al. 2020) instead takes the MSE of unnormalised attention scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.feature.hidden import (BLOCKS_FREE, check_layer_map, layer_pairs, require_tokens,
                                         token_mask)
from kdrun.losses.registry import register_loss


def attention_kl(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean over counted query rows of KL(teacher row || student row), heads averaged first.

    student, teacher: (B, heads, T, T) attention probabilities (head counts may differ);
    mask: (B, T) counted tokens. Rows are picked before anything else, so padding never
    enters; keys where the teacher has no mass count 0, and the student's log is taken of
    a probability clamped at the smallest float, so a zero there cannot give NaN gradients.
    """
    counted = mask.bool()
    s = student.transpose(1, 2)[counted].float().mean(1)          # (N, heads, T) -> (N, T)
    t = teacher.detach().transpose(1, 2)[counted].float().mean(1)
    log_s = s.clamp_min(torch.finfo(s.dtype).tiny).log()
    kl = (torch.xlogy(t, t) - t * log_s).sum(-1)
    return kl.sum() / max(kl.shape[0], 1)


@dataclass
class AttentionConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    # [[student_block, teacher_block], ...]; MiniLM: last <-> last; empty: uniform mapping
    layer_map: List[List[int]] = bounded(factory=lambda: [[-1, -1]], free=BLOCKS_FREE)


@register_loss
class Attention(DistillationLoss):
    name = "attention"
    config = AttentionConfig
    requires = ("logits", "attentions")
    tasks = ("lm", "embed")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        require_tokens(self.name, student)
        self.pairs = layer_pairs(cfg.layer_map, len(student.attentions), len(teacher.attentions),
                                 self.key("layer_map"))

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        check_layer_map(cfg.layer_map, cls.key("layer_map"))

    def forward(self, student, teacher, batch):
        counted = token_mask(batch)
        values = [attention_kl(student.attentions[i], teacher.attentions[j], counted)
                  for i, j in self.pairs]
        return {"attention": self.cfg.weight * torch.stack(values).mean()}
