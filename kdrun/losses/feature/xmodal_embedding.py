"""xmodal_embedding: cross-modal embedding transfer (Gupta, Hoffman & Malik, "Cross Modal
Distillation for Supervision Transfer", CVPR 2016; Aytar et al., SoundNet, NeurIPS 2016).

The student sees another modality of the same sample; a linear head maps its embedding
into the teacher's space, where it regresses the teacher's embedding of the paired
sample (L2, or 1 - cosine). Not a `loss=` option: algorithm=cross_modal adds it with
`algorithm.embedding_weight` > 0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.losses.base import DistillationLoss
from kdrun.models.output import ModelOutput


class EmbeddingTransfer(DistillationLoss):
    """A linear head maps the student's embedding into the teacher's space, where it
    regresses the teacher's embedding of the paired sample."""

    name = "xmodal_embedding"
    knowledge = "feature"
    requires = ("embedding",)

    def __init__(self, cfg, student: ModelOutput, teacher: ModelOutput):
        super().__init__(cfg, student, teacher)
        self.head = nn.Linear(student.embedding.shape[1], teacher.embedding.shape[1])

    def warmup_factor(self, epoch: int) -> float:
        return 1.0

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch) -> dict[str, Tensor]:
        s, t = self.head(student.embedding), teacher.embedding.detach()
        if self.cfg.embedding_distance == "cosine":
            value = 1.0 - F.cosine_similarity(s, t, dim=1).mean()
        else:
            value = F.mse_loss(s, t)
        return {"xmodal_embed": self.cfg.embedding_weight * value}
