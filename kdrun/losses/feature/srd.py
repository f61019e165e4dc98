"""srd: Yang, Martinez, Bulat, Tzimiropoulos, "Knowledge Distillation via Softmax
Regression Representation Learning" (ICLR 2021; SRRL in some peers).

The student's penultimate feature h_S, through a connector r (linear, BN,
ReLU: a 1x1 conv on the pooled feature), is matched to the teacher's h_T
(feature matching, L_FM) and, passed through the teacher's frozen classifier
W_T, must give the teacher's logits (softmax regression, L_SR):
    alpha * mean (r(h_S) - h_T)^2  +  beta * mean (W_T r(h_S) - z_T)^2
on top of the label cross-entropy; the student keeps predicting with its own
classifier. W_T comes from teacher.get_classifier() at bind time and is never
trained or saved.

Defaults alpha = beta = 1: the authors' code (KD_SRRL, ImageNet: CE + 1 * (L_FM
+ L_SR), both mean squared errors) and SimKD's CIFAR reimplementation (-b 1).
The authors' code applies the connector to the last map before pooling; kdrun
applies it to the pooled feature h_S of the paper's notation (as SimKD's
reimplementation), which fits any family's embedding.

Not torchdistill's "srd": that name there is Miles & Mikolajczyk, "Understanding
the Role of the Projector in Knowledge Distillation" (AAAI 2024), another method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.feature.simkd import call_frozen
from kdrun.losses.registry import register_loss


@dataclass
class SRDConfig(LossConfig):
    alpha: float = bounded(1.0, gt=0)  # feature matching L_FM
    beta: float = bounded(1.0, gt=0)  # softmax regression L_SR


@register_loss
class SRD(DistillationLoss):
    name = "srd"
    config = SRDConfig
    requires = ("logits", "embedding")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        d_s, d_t = student.embedding.shape[1], teacher.embedding.shape[1]
        self.connector = nn.Sequential(nn.Linear(d_s, d_t, bias=False), nn.BatchNorm1d(d_t),
                                       nn.ReLU())
        object.__setattr__(self, "classifier", None)

    def bind_teacher(self, teacher):
        object.__setattr__(self, "classifier", teacher.get_classifier())

    def forward(self, student, teacher, batch):
        if self.classifier is None:
            raise RuntimeError("srd needs the teacher's classifier: call bind_teacher first")
        h = self.connector(student.embedding)
        return {"srd_fm": self.cfg.alpha * F.mse_loss(h, teacher.embedding),
                "srd_sr": self.cfg.beta * F.mse_loss(call_frozen(self.classifier, h), teacher.logits)}
