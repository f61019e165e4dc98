"""simkd: Chen, Mei, Zhang, Wang, Feng, Chen, "Knowledge Distillation with the Reused Teacher
Classifier" (CVPR 2022).

A projector P (1x1 conv-BN-ReLU to C_t / f, 3x3 conv-BN-ReLU, 1x1 conv-BN-ReLU
to C_t; factor f = 2) maps the student's last feature map onto the teacher's
final map, trained with an L2 loss alone:
    weight * mean (P(s) - t)^2,   weight = 1, no label cross-entropy
and the student then predicts with the teacher's frozen classifier on the
pooled projection: logits = W_t avgpool(P(s)). The classifier comes from
teacher.get_classifier() at bind time; it is never trained or saved. The
larger map is average-pooled to the smaller one's size before the projector
(student) or the loss (teacher), as in the authors' code.

The teacher's final map is the one its classifier reads after pooling:
ReLU(preact_features[-1]) when its width is the embedding's (zoo ResNets, WRNs,
VGGs), else features[-1] when it is (timm ResNets), else the embedding itself as
a 1x1 map (nets with a wider head conv: ShuffleNetV2, MobileNetV2, timm
MobileNetV3), where SimKD reduces to matching the pooled embedding.

Defaults: the authors' CIFAR-100 command (-c 0 -d 0 -b 1 -f 2), so ce_scale is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.stages import StageLoss


def final_map(teacher) -> Tensor:
    """The teacher map whose global average pool feeds its classifier (see module doc)."""
    width = teacher.embedding.shape[1]
    if teacher.preact_features is not None and teacher.preact_features[-1].shape[1] == width:
        return F.relu(teacher.preact_features[-1])
    if teacher.features[-1].shape[1] == width:
        return teacher.features[-1]
    return teacher.embedding[:, :, None, None]


def call_frozen(module: nn.Module, x: Tensor) -> Tensor:
    """module(x) with its parameters detached: gradients reach x, never the (teacher's) module."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, (x,))


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU()]


@dataclass
class SimKDConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    # projector bottleneck: C_t / factor channels
    factor: int = bounded(2, gt=0, why="the projector's bottleneck factor; the paper uses 2")
    student_stage: int = bounded(-1, free="stage indices, checked against the models when the loss is built")


@register_loss
class SimKD(StageLoss):
    name = "simkd"
    config = SimKDConfig
    requires = ("features", "embedding")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        s, t = self.student_stage(student), self.teacher_stage(teacher)
        c_t, mid = t.shape[1], max(1, t.shape[1] // cfg.factor)
        self.target_size = tuple(t.shape[-2:])
        self.projector = nn.Sequential(*conv_bn_relu(s.shape[1], mid, 1), *conv_bn_relu(mid, mid, 3),
                                       *conv_bn_relu(mid, c_t, 1))
        object.__setattr__(self, "classifier", None)


    @classmethod
    def ce_scale(cls, cfg):
        return 0.0  # SimKD trains on the feature loss alone

    def teacher_stage(self, teacher):
        return final_map(teacher)  # the map the teacher's classifier reads, not an indexed stage

    def bind_teacher(self, teacher):
        object.__setattr__(self, "classifier", teacher.get_classifier())

    def project(self, student_map: Tensor) -> Tensor:
        if student_map.shape[-2] > self.target_size[0]:
            student_map = F.adaptive_avg_pool2d(student_map, self.target_size)
        return self.projector(student_map)

    def student_logits(self, student):
        if self.classifier is None:
            raise RuntimeError("simkd predicts with the teacher's classifier: call bind_teacher first")
        projected = self.project(self.student_stage(student))
        return call_frozen(self.classifier, projected.mean((2, 3)))

    def forward(self, student, teacher, batch):
        projected = self.project(self.student_stage(student))
        target = self.teacher_stage(teacher)
        if target.shape[-2:] != projected.shape[-2:]:
            target = F.adaptive_avg_pool2d(target, projected.shape[-2:])
        return {"simkd": self.cfg.weight * F.mse_loss(projected, target)}
