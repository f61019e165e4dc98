"""ft: Kim, Park, Kwak, "Paraphrasing Complex Network: Network Compression via Factor
Transfer" (NeurIPS 2018).

A paraphraser (convolutional autoencoder, encoder C -> k*C channels, k = 0.5)
is first trained alone to reconstruct the teacher's last-stage map (the
pre-training stage, `paraphraser_epochs`); the student and everything else stay
frozen there. Then a translator (three 3x3 convs on the student's last stage)
learns to produce the teacher's factors, the encoder's output:
    beta * mean | F_T/||F_T||_2 - F_S/||F_S||_2 |^p,  p = 1, factors vectorised per sample
with the paraphraser frozen, next to the label cross-entropy (the authors' code
trains on CE + beta * L_FT). Where the two maps' sizes differ, the larger factor
is average-pooled.

Defaults follow the authors' CIFAR code: beta = 500, k = 0.5, LeakyReLU(0.1),
no BatchNorm in either module, p = 1 on the vectorised factor. The
reconstruction is an L2 (mean squared error, as RepDistiller; the authors' code
uses L1: `reconstruction=l1`), and the paraphraser trains for 30 epochs
(RepDistiller's --init_epochs; the authors' script runs 6).

Peers differ: RepDistiller uses beta = 200, a BN translator, and as factor the
channel mean of the squared factor map (an attention map) instead of the
whole vectorised factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StageLoss, match_spatial


def conv_stack(channels: list[int], transpose: bool = False) -> nn.Sequential:
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [conv(c_in, c_out, 3, 1, 1), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


def factor_loss(student_factor: Tensor, teacher_factor: Tensor, p: int = 1) -> Tensor:
    """mean |F_T/||F_T|| - F_S/||F_S|| |^p over the vectorised, per-sample L2-normalised factors."""
    s, t = match_spatial(student_factor, teacher_factor)
    return (F.normalize(s.flatten(1), dim=1) - F.normalize(t.flatten(1), dim=1)).abs().pow(p).mean()


@dataclass
class FTConfig(LossConfig):
    beta: float = bounded(500.0, gt=0)
    # paraphrase rate k: factor channels = k * teacher channels
    rate: float = bounded(0.5, gt=0, le=1, why="the paraphrase rate k (the paper uses 0.5)")
    p: int = bounded(1, ge=1, le=2, why="1 (the paper) or 2")
    paraphraser_epochs: int = bounded(30, gt=0,
                                      why="the paraphraser must be trained before its "
                                      "factors mean anything")
    reconstruction: str = "l2"        # l2 | l1
    student_stage: int = bounded(-1, free="stage indices, checked against the models when the loss is built")
    teacher_stage: int = bounded(-1, free="stage indices, checked against the models when the loss is built")


@register_loss
class FT(StageLoss):
    name = "ft"
    config = FTConfig

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.student_stage(student), self.teacher_stage(teacher)
        c_t = t.shape[1]
        k = max(1, int(round(c_t * cfg.rate)))
        self.paraphraser = nn.ModuleDict({"encoder": conv_stack([c_t, c_t, k, k]),
                                          "decoder": conv_stack([k, k, c_t, c_t], transpose=True)})
        self.translator = conv_stack([s.shape[1], s.shape[1], k, k])

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.p not in (1, 2):
            raise ConfigError(f"{cls.key('p')}={cfg.p}: use 1 (the paper's L1) or 2")
        if cfg.reconstruction not in ("l1", "l2"):
            raise ConfigError(f"{cls.key('reconstruction')}={cfg.reconstruction}: use l2 or l1")

    @property
    def pretrain_epochs(self):
        return self.cfg.paraphraser_epochs

    def pretrain_terms(self, student, teacher, batch):
        t = self.teacher_stage(teacher)
        rebuilt = self.paraphraser["decoder"](self.paraphraser["encoder"](t))
        error = F.mse_loss if self.cfg.reconstruction == "l2" else F.l1_loss
        return {"ft_reconstruction": error(rebuilt, t)}

    def pretrain_parameters(self, student):
        return list(self.paraphraser.parameters())

    def forward(self, student, teacher, batch):
        with torch.no_grad():  # the trained paraphraser is frozen
            factor_t = self.paraphraser["encoder"](self.teacher_stage(teacher))
        factor_s = self.translator(self.student_stage(student))
        return {"ft": self.cfg.beta * factor_loss(factor_s, factor_t, self.cfg.p)}
