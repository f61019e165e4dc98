"""embed: the student's sentence embedding regresses the teacher's (task=embed).

Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation" (EMNLP 2020): the student is trained so that its sentence embedding equals the
teacher's, MSE(s, t); DistilBERT (Sanh et al. 2019) aligns hidden states by the cosine
distance instead. Here a learnable linear map P (student width -> teacher width, identity when
the widths agree, as kdrun.losses.feature.hidden's W_h) carries the student's embedding into
the teacher's space, and per sentence
    cosine: 1 - cos(P s, t)          (in [0, 2]; ignores the norm)
    l2:     ||P s - t||^2            (summed over dimensions)
averaged over the batch, times `weight`; the engine's label CE on the student's classifier
head gets `label_weight` (1; 0 leaves the teacher's embeddings as the only target). With unit-norm embeddings (both of kdrun's text
encoders normalise) and P s of unit norm the two agree up to a factor 2.

Peers differ: Reimers & Gurevych need no projection (their student is as wide as the
teacher) and take torch's MSELoss, the mean over dimensions: `l2` here is that times the
teacher's width, so `weight` does not shrink with it. The teacher's embeddings are read from
task=embed's cache, so the frozen teacher runs once per data set, not once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.feature.hidden import projection
from kdrun.losses.registry import register_loss

DISTANCES = ("cosine", "l2")


def embedding_distance(student: Tensor, teacher: Tensor, distance: str) -> Tensor:
    """Per-row distance of (B, D) embeddings: 1 - cosine, or the squared L2 norm of the gap."""
    if distance == "cosine":
        return 1.0 - F.cosine_similarity(student, teacher, dim=-1)
    return (student - teacher).pow(2).sum(-1)


@dataclass
class EmbedConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    distance: str = "cosine"          # cosine | l2 (squared, summed over dimensions)
    # the engine's label CE on the student's head is weighted by this; 0 distils the embedding
    # alone (Reimers & Gurevych's setting: no labels)
    label_weight: float = bounded(1.0, ge=0, why="0 trains on the teacher's embeddings alone")


@register_loss
class Embed(DistillationLoss):
    name = "embed"
    config = EmbedConfig
    requires = ("embedding",)
    tasks = ("embed",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.projection = projection(student.embedding.shape[-1], teacher.embedding.shape[-1])

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.distance not in DISTANCES:
            raise ConfigError(f"{cls.key('distance')}={cfg.distance}: unknown distance; use "
                              f"{' or '.join(DISTANCES)}")

    @classmethod
    def ce_scale(cls, cfg) -> float:
        return cfg.label_weight

    def forward(self, student, teacher, batch):
        projected = self.projection(student.embedding)
        value = embedding_distance(projected, teacher.embedding.detach(), self.cfg.distance)
        return {"embed": self.cfg.weight * value.mean()}
