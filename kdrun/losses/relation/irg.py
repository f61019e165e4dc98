"""irg: Liu, Cao, Li, Yuan, Hu, Li & Duan, "Knowledge Distillation via Instance
Relationship Graph" (CVPR 2019).

An IRG of a layer has the instances' features as vertices and their squared Euclidean
distances as edges, each edge matrix divided by its largest entry (the authors' Caffe
layers). The student mimics
- the vertices of the last layer (logits):           lambda_vertex * mse(z_s, z_t);
- the edges of the chosen stages (and the pre-logit embedding): lambda_edge * mean_l mse(A_s^l, A_t^l);
- the IRG transformation between consecutive chosen stages: per instance, the squared
  distance between its features at the two stages (larger map average-pooled, wider
  one channel-pooled), divided by the batch maximum: lambda_transform * mse(T_s, T_t).
Weights 0.1 / 5 / 5 and layers (the last two stages plus the embedding) follow AberHu's
Knowledge-Distillation-Zoo port for CIFAR; a weight of 0 drops that term (IRG-t is
optional in the paper).

Peers differ: the authors' Caffe release applies Euclidean losses with weight 0.005
on pooled features only (edges of the embedding, transformations within stages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StagePairLoss, match_spatial


def edge_matrix(x: Tensor) -> Tensor:
    """(B, ...) -> (B, B) squared Euclidean distances, zero diagonal, divided by the max."""
    f = x.flatten(1)
    sq = f.pow(2).sum(1)
    d = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * f @ f.t()).clamp_min(0)
    d = d * (1 - torch.eye(f.shape[0], dtype=f.dtype, device=f.device))
    return d / d.max().clamp_min(1e-12)


def transformation(earlier: Tensor, later: Tensor) -> Tensor:
    """(B,) squared distance of each instance between two stages of one model, / max."""
    earlier, later = match_spatial(earlier, later)
    c = min(earlier.shape[1], later.shape[1])
    earlier, later = (F.adaptive_avg_pool3d(x.unsqueeze(1), (c, *x.shape[-2:])).squeeze(1)
                      for x in (earlier, later))
    d = (earlier - later).flatten(1).pow(2).sum(1)
    return d / d.max().clamp_min(1e-12)


@dataclass
class IRGConfig(LossConfig):
    lambda_vertex: float = bounded(0.1, ge=0)  # lambda_1: logits
    lambda_edge: float = bounded(5.0, ge=0)  # lambda_2: edges of the chosen stages (+ embedding)
    lambda_transform: float = bounded(5.0, ge=0)  # lambda_3: IRG transformation; 0 = off
    edge_on_embedding: bool = True
    student_stages: List[int] = bounded(factory=lambda: [-2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-2, -1], free="stage indices, checked against the models when the loss is built")


@register_loss
class IRG(StagePairLoss):
    name = "irg"
    config = IRGConfig
    requires = ("logits", "features", "embedding")

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.lambda_vertex == cfg.lambda_edge == cfg.lambda_transform == 0:
            raise ConfigError(f"loss.{cls.name}: lambda_vertex, lambda_edge and lambda_transform "
                              "are all 0; set one > 0 (defaults 0.1, 5, 5)")
        if cfg.lambda_transform > 0 and len(cfg.student_stages) < 2:
            raise ConfigError(f"{cls.key('student_stages')}={list(cfg.student_stages)}: the IRG "
                              "transformation needs two stages; add one or set "
                              f"{cls.key('lambda_transform')}=0")

    def forward(self, student, teacher, batch):
        cfg = self.cfg
        s, t = self.stages(student, teacher)
        t = [f.detach() for f in t]
        terms = {}
        if cfg.lambda_vertex > 0:
            terms["irg_vertex"] = cfg.lambda_vertex * F.mse_loss(student.logits,
                                                                 teacher.logits.detach())
        if cfg.lambda_edge > 0:
            pairs = list(zip(s, t))
            if cfg.edge_on_embedding:
                pairs.append((student.embedding, teacher.embedding.detach()))
            edges = [F.mse_loss(edge_matrix(a), edge_matrix(b)) for a, b in pairs]
            terms["irg_edge"] = cfg.lambda_edge * sum(edges) / len(edges)
        if cfg.lambda_transform > 0:
            moves = [F.mse_loss(transformation(s[i], s[i + 1]), transformation(t[i], t[i + 1]))
                     for i in range(len(s) - 1)]
            terms["irg_transform"] = cfg.lambda_transform * sum(moves) / len(moves)
        return terms
