"""aicsd: Mansourian, Ahmadi & Kasaei, "AICSD: Adaptive Inter-Class Similarity Distillation
for Semantic Segmentation" (Multimedia Tools and Applications 2025; arXiv 2308.04243).

Each class k's logit map, flattened over the H*W positions and softened, is an intra-class
distribution P_k = softmax(z_k / T). The inter-class similarity matrix holds
ICS[i, j] = KL(P_i || P_j) (averaged over the batch); each row is L2-normalised and the
student's matrix matches the teacher's:
    ics = mean over (i, j) of (ICS_s[i, j] - ICS_t[i, j])^2
Pixel KD (kdrun/losses/response/pixel_kd.py, T^2 * per-pixel KL) comes with it, and the
adaptive loss weighting (ALW) moves the weight from the teacher's pixels to the labels and
the class relations as training goes: with alpha = epoch / epochs (0 at the first epoch),
    alpha * (CE + ics_weight * ics) + (1 - alpha) * kd_weight * pixel_kd
so this method carries its own CE (`aicsd_ce`) and sets the engine's to 0 while `adaptive`;
with adaptive=false the terms are the engine's CE + ics_weight * ics + kd_weight * pixel_kd.

Where the authors' code (AmirMansurian/AICSD distiller.py and train_kd.py) differs: it takes
the softmax along the height axis only (dim 2 of (B, K, H, W)) and hands nn.KLDivLoss
probabilities where it expects log-probabilities, fills only the upper triangle and mirrors
it, and divides the MSE by the batch size once more; here the softmax runs over all H*W
positions, as the authors' README describes it ("softmax to spatial dimension"; the paper
itself was not read here), with exact KLs both ways. ALW is the code's commented-out option
(alpha = epoch / 120; alpha * (CE + ics) + (1 - alpha) * pixel KD), with 120 -> epochs. Its README's command
(`--pa_lambda 9500 --pi_lambda 10 --ALW`) names flags whose meaning changed between
versions of distiller.py, so the default weights here are ours: kd_weight 0.5 matches
pi_lambda 10 under KLDivLoss's "mean" over 21 VOC classes; ics_weight 100 keeps the ics term
of the cross-entropy's order on seg_digits (0.16 vs 0.27 before alpha at epoch 11 of
recipes/seg_digits; our choice, not a published value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.response.pixel_kd import pixel_kl, same_size


def inter_class_similarity(logits: Tensor, temperature: float) -> Tensor:
    """(K, K) batch mean of KL(P_i || P_j) between the classes' spatial distributions."""
    log_p = F.log_softmax(logits.flatten(2) / temperature, dim=-1)     # (B, K, HW)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)                                   # (B, K)
    cross = p @ log_p.transpose(1, 2)                                   # [i, j] = sum p_i log p_j
    return (neg_entropy[:, :, None] - cross).mean(0)


def ics_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    s = F.normalize(inter_class_similarity(student_logits, temperature), dim=1)
    t = F.normalize(inter_class_similarity(teacher_logits, temperature), dim=1)
    return (s - t).pow(2).mean()


@dataclass
class AICSDConfig(LossConfig):
    temperature: float = bounded(1.0, gt=0)
    ics_weight: float = bounded(100.0, ge=0)
    kd_weight: float = bounded(0.5, ge=0)
    adaptive: bool = True             # ALW: alpha = epoch / epochs moves weight from KD to CE + ics
    # the length of ALW's ramp; null: trainer.epochs (task=segmentation tells the loss)
    epochs: Optional[int] = bounded(None, ge=1, why="ALW's alpha ramps over this many epochs")


@register_loss
class AICSD(DistillationLoss):
    name = "aicsd"
    config = AICSDConfig
    tasks = ("segmentation",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.epoch, self.epochs = 0, cfg.epochs

    @classmethod
    def ce_scale(cls, cfg):
        return 0.0 if cfg.adaptive else 1.0  # ALW weighs the cross-entropy itself

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_schedule(self, epochs: int) -> None:
        """The training's length, ALW's ramp unless loss.aicsd.epochs sets one."""
        if self.cfg.epochs is None:
            self.epochs = epochs

    def alpha(self) -> float:
        if not self.cfg.adaptive:
            return 1.0
        if self.epochs is None:
            raise RuntimeError("aicsd: set loss.aicsd.epochs or call set_schedule(epochs)")
        return min(1.0, self.epoch / self.epochs)

    def forward(self, student, teacher, batch):
        teacher_logits = same_size(teacher.logits, student.logits)
        ics = self.cfg.ics_weight * ics_loss(student.logits, teacher_logits, self.cfg.temperature)
        kd = self.cfg.kd_weight * pixel_kl(student.logits, teacher_logits, self.cfg.temperature)
        if not self.cfg.adaptive:
            return {"aicsd_ics": ics, "aicsd_kd": kd}
        alpha = self.alpha()
        return {"aicsd_ce": alpha * F.cross_entropy(student.logits, batch.y),
                "aicsd_ics": alpha * ics, "aicsd_kd": (1.0 - alpha) * kd}
