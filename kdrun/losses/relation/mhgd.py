"""mhgd: the learned knowledge graph of MHGD, Lee & Song, "Graph-based Knowledge Distillation
by Multi-head Attention Network" (BMVC 2019). Not a `loss=` option: algorithm=graph adds it.

Each chosen stage map is compressed, as in the authors' KD-SVD, to its leading right
singular vectors V (sign- and order-aligned between student and teacher; reused from
kdrun.losses.relation.kdsvd). For each pair of consecutive stages (l-1, l) a multi-head
attention network embeds V^l (sender) and V^l-1 (receiver) with FC + BN and forms one
B x B graph per head: G = sender @ receiver^T, a relation between every pair of samples of
the batch. Two phases, as in the authors' code:
  1. `mha_epochs` epochs on the teacher alone (`pretrain_terms`): an estimator predicts V^l from
     V^l-1 through softmax(G) (random heads dropped per sample); the attention and the
     estimator learn from 1 - cos(estimate, V^l). The graph is learned, not a fixed formula.
  2. distillation (`forward`): the attention is frozen (detached weights, BN running
     statistics); teacher and student graphs tanh(G_T), tanh(G_S) are matched row-wise:
         weight * sum_pairs sum_heads mean_rows KL(softmax(tanh G_S) || softmax(tanh G_T))
     (the authors' direction). It is zero when the student's maps equal the teacher's.

Not reproduced: the authors sum the KL over heads and rows and clip its gradient to the
norm of the cross-entropy gradient (ramped in by a sigmoid); kdrun averages over rows and
exposes `weight` instead. They align 4 student singular vectors per teacher vector;
kdsvd.py keeps k + 1. Student stages narrower or wider than the teacher's pass through
1x1 connectors (the paper pairs equal widths).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.losses.base import DistillationLoss
from kdrun.losses.relation.kdsvd import aligned_singular_vectors
from kdrun.losses.relation.stage_adapters import channel_adapters
from kdrun.losses.stages import pick_stages


def _embed(x: Tensor, fc: nn.Linear, bn: nn.BatchNorm1d, frozen: bool) -> Tensor:
    if not frozen:
        return bn(fc(x))
    x = F.linear(x, fc.weight.detach(), fc.bias.detach())
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight.detach(), bn.bias.detach(),
                        training=False, eps=bn.eps)


class AttentionGraph(nn.Module):
    """(B, Dk) senders, (B, Dq) receivers -> (heads, B, B) graph (the authors' Attention_head)."""

    def __init__(self, dim_sender: int, dim_receiver: int, dim: int, heads: int):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.sender = nn.Linear(dim_sender, dim * heads)
        self.sender_bn = nn.BatchNorm1d(dim * heads)
        self.receiver = nn.Linear(dim_receiver, dim * heads)
        self.receiver_bn = nn.BatchNorm1d(dim * heads)

    def forward(self, senders: Tensor, receivers: Tensor, frozen: bool = False) -> Tensor:
        b = senders.shape[0]
        s = _embed(senders, self.sender, self.sender_bn, frozen).view(b, self.dim, self.heads)
        r = _embed(receivers, self.receiver, self.receiver_bn, frozen).view(b, self.dim, self.heads)
        return s.permute(2, 0, 1) @ r.permute(2, 1, 0)


class Estimator(nn.Module):
    """Predicts the later stage's vectors from the earlier stage's through the graph."""

    def __init__(self, dim_in: int, dim_out: int, heads: int):
        super().__init__()
        hidden = (dim_in + dim_out) // 2
        self.embed, self.bn = nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden * heads, dim_out)
        nn.init.zeros_(self.out.bias)

    def forward(self, earlier: Tensor, graph: Tensor) -> Tensor:
        heads, b, _ = graph.shape
        weights = graph.softmax(-1)
        noise = torch.randn(heads, b, 1, device=graph.device)  # the authors' random head drop
        weights = weights * (noise > noise.mean(0, keepdim=True)).to(weights.dtype)
        hidden = F.relu(self.bn(self.embed(earlier)))
        mixed = (weights @ hidden).permute(1, 0, 2).reshape(b, -1)
        return F.normalize(self.out(mixed), dim=-1)


def graph_kl(student_graph: Tensor, teacher_graph: Tensor) -> Tensor:
    """sum over heads of the row-mean KL(softmax(tanh G_s) || softmax(tanh G_t))."""
    log_s = F.log_softmax(torch.tanh(student_graph), -1)
    log_t = F.log_softmax(torch.tanh(teacher_graph), -1)
    kl = (log_s.exp() * (log_s - log_t)).sum(-1)             # (heads, B)
    return kl.mean(-1).sum()


class GraphLoss(DistillationLoss):
    """MHGD's term, sized from probe outputs; the algorithm's config (GraphConfig) drives it."""

    name = "graph"
    knowledge = "relation"
    requires = ("features",)

    def __init__(self, cfg: Any, student, teacher, context=None, mha_epochs: int = 1):
        super().__init__(cfg, student, teacher, context)
        self.mha_epochs = mha_epochs
        s = pick_stages(student.features, cfg.student_stages, "algorithm.student_stages")
        t = pick_stages(teacher.features, cfg.teacher_stages, "algorithm.teacher_stages")
        self.adapters = channel_adapters(s, t)
        dims = [f.shape[1] * cfg.num_vectors for f in t]
        pairs = list(zip(dims[1:], dims[:-1]))                  # (later, earlier)
        self.attention = nn.ModuleList(AttentionGraph(d, e, (d + e) // 2, cfg.heads)
                                       for d, e in pairs)
        self.estimators = nn.ModuleList(Estimator(e, d, cfg.heads) for d, e in pairs)

    def warmup_factor(self, epoch: int) -> float:
        return 1.0

    @property
    def pretrain_epochs(self) -> int:
        return self.mha_epochs

    def pretrain_parameters(self, student: nn.Module):
        return [*self.attention.parameters(), *self.estimators.parameters()]

    def vectors(self, student, teacher) -> tuple[list[Tensor], list[Tensor]]:
        """Per chosen stage: (B, C*k) student and teacher singular vectors, aligned."""
        stages = zip(self.adapters, self.cfg.student_stages, self.cfg.teacher_stages)
        pairs = [aligned_singular_vectors(adapt(student.features[i]), teacher.features[j].detach(),
                                          self.cfg.num_vectors) for adapt, i, j in stages]
        return [s.flatten(1) for s, _ in pairs], [t.flatten(1) for _, t in pairs]

    def pretrain_terms(self, student, teacher, batch) -> dict[str, Tensor]:
        with torch.no_grad():
            _, v_t = self.vectors(student, teacher)
        total = 0
        for i, (attend, estimate) in enumerate(zip(self.attention, self.estimators)):
            graph = attend(v_t[i + 1], v_t[i])
            guess = estimate(v_t[i], graph)
            total = total + (1 - (guess * F.normalize(v_t[i + 1], dim=-1)).sum(-1)).mean()
        return {"graph_mha": total}

    def forward(self, student, teacher, batch) -> dict[str, Tensor]:
        v_s, v_t = self.vectors(student, teacher)
        total = 0
        for i, attend in enumerate(self.attention):
            g_t = attend(v_t[i + 1], v_t[i], frozen=True)
            g_s = attend(v_s[i + 1], v_s[i], frozen=True)
            total = total + graph_kl(g_s, g_t)
        return {"graph": self.cfg.weight * total}
