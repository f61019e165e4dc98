"""pixel_kd: per-pixel Hinton KD for dense prediction, the "pixel-wise distillation" of Liu,
Chen, Liu, Qin, Luo & Wang, "Structured Knowledge Distillation for Semantic Segmentation"
(CVPR 2019; Hinton, Vinyals & Dean 2015 applied at every pixel).

Every pixel of the (B, K, H, W) logits is a K-class distribution; the student matches the
teacher's softened one:
    weight * T^2 * mean over pixels of KL(softmax(z_t / T) || softmax(z_s / T))
with the KL summed over classes. The label cross-entropy keeps weight 1 (segmentation KD
adds its terms to it rather than mixing them as Hinton's alpha does). Teacher logits of
another resolution are resized bilinearly to the student's.

Peers differ in scale: the SKD / IFVD / CWD code (TorchDistiller's CriterionKD) uses
nn.KLDivLoss's default "mean", which also divides by the class count K, with weight 10 on
Cityscapes (K = 19): about 0.5 per pixel in the units here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def same_size(teacher_map: Tensor, student_map: Tensor) -> Tensor:
    """`teacher_map` resized (bilinear) to the student's H x W when they differ."""
    if teacher_map.shape[-2:] == student_map.shape[-2:]:
        return teacher_map
    return F.interpolate(teacher_map, size=student_map.shape[-2:], mode="bilinear",
                         align_corners=False)


def pixel_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(p_t || p_s) over the class axis (dim 1), averaged over batch and pixels."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
    return kl.mean() * temperature**2


@dataclass
class PixelKDConfig(LossConfig):
    temperature: float = bounded(1.0, gt=0, why="the softmax temperature; SKD uses 1")
    weight: float = bounded(1.0, ge=0)


@register_loss
class PixelKD(DistillationLoss):
    name = "pixel_kd"
    config = PixelKDConfig
    tasks = ("segmentation",)

    def forward(self, student, teacher, batch):
        teacher_logits = same_size(teacher.logits, student.logits)
        return {"pixel_kd": self.cfg.weight * pixel_kl(student.logits, teacher_logits,
                                                      self.cfg.temperature)}
