"""ifvd: Wang, Zhou, Jiang, Bai & Xu, "Intra-class Feature Variation Distillation for
Semantic Segmentation" (ECCV 2020).

The intra-class feature variation (IFV) of a feature map is, at every pixel, the cosine
similarity between the pixel's feature and the prototype of its class: the mean feature of
that class's pixels in the same image (labels resized to the map by nearest neighbour).
The student matches the teacher's IFV map:
    weight * mean over pixels of (cos(f_s, proto_s) - cos(f_t, proto_t))^2
Both maps are computed within each model, so the two may have any widths; no connector.
Pixels not scored (IGNORE_INDEX) compare nothing. Defaults are the authors' (YukangWang/
IFVD options.py: weight 200 on the map before the classifier, features[-1] here). The
authors' training also turns on pixel KD (weight 10) and an adversarial term: compose
loss=[ifvd,pixel_kd] for the first; the adversarial term is not included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.data.batch import IGNORE_INDEX
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import pick_stage


def class_masks(labels: Tensor, size: tuple[int, int], num_classes: int) -> Tensor:
    """(B, K, h, w) float one-hot of (B, H, W) labels resized to `size` by nearest neighbour;
    unscored pixels are zero in every class."""
    small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    scored = small != IGNORE_INDEX
    onehot = F.one_hot(small.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return onehot.float() * scored[:, None].float()


def prototype_similarity(feature: Tensor, masks: Tensor) -> Tensor:
    """(B, h, w) cosine similarity of each pixel's feature (B, C, h, w) with the mean feature of
    its class in its image; 0 where a pixel has no class."""
    sums = masks.flatten(2) @ feature.flatten(2).transpose(1, 2)        # (B, K, C)
    prototypes = sums / masks.flatten(2).sum(-1, keepdim=True).clamp_min(1e-6)
    per_pixel = (prototypes.transpose(1, 2) @ masks.flatten(2)).view_as(feature)
    return F.cosine_similarity(feature, per_pixel, dim=1)


def ifv_loss(student_feature: Tensor, teacher_feature: Tensor, labels: Tensor,
             num_classes: int) -> Tensor:
    masks = class_masks(labels, tuple(student_feature.shape[-2:]), num_classes)
    masks_t = masks if teacher_feature.shape[-2:] == student_feature.shape[-2:] else \
        class_masks(labels, tuple(teacher_feature.shape[-2:]), num_classes)
    s = prototype_similarity(student_feature, masks)
    t = prototype_similarity(teacher_feature, masks_t)
    if t.shape != s.shape:
        t = F.interpolate(t[:, None], size=s.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (s - t).pow(2).mean()


@dataclass
class IFVDConfig(LossConfig):
    weight: float = bounded(200.0, ge=0, why="the authors use 200")
    student_stage: int = bounded(-1, free="a stage index, checked against the models")
    teacher_stage: int = bounded(-1, free="a stage index, checked against the models")


@register_loss
class IFVD(DistillationLoss):
    name = "ifvd"
    config = IFVDConfig
    requires = ("logits", "features")
    tasks = ("segmentation",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        self.num_classes = student.logits.shape[1] if student is not None else 0
        if student is not None and teacher is not None:  # bad indices fail when built
            pick_stage(student.features, cfg.student_stage, self.key("student_stage"))
            pick_stage(teacher.features, cfg.teacher_stage, self.key("teacher_stage"))

    def forward(self, student, teacher, batch):
        s = student.features[self.cfg.student_stage]
        t = teacher.features[self.cfg.teacher_stage]
        return {"ifvd": self.cfg.weight * ifv_loss(s, t, batch.y, self.num_classes)}
