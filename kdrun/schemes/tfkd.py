"""Teacher-free KD: Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge Distillation via
Label Smoothing Regularization" (CVPR 2020), Tf-KD_reg.

A virtual teacher replaces the trained one: for a sample of class c it predicts
    p_d(k) = a if k = c, else (1 - a) / (K - 1)          (a = scheme.correct_prob = 0.9)
and the selected response methods teach from it as from any teacher (loss=kd is
the paper's (1 - alpha) CE + alpha KL(p_d^tau || p^tau)). The virtual teacher's
logits are log p_d, so a method's temperature softens it like a real teacher's
logits. Only response methods compose: the virtual teacher has no features.

Peers differ: the authors' code softmaxes p_d / tau (probabilities used as logits)
and leaves the student unsoftened; kdrun follows the paper's notation, where both
distributions are softened by the same tau.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kdrun.engine.assemble import assemble_losses, build_student, train
from kdrun.engine.distiller import Distiller
from kdrun.losses import ce_weight
from kdrun.models.output import ModelOutput
from kdrun.schemes.composition import logits_teacher, require_composable, require_no_pretraining


def virtual_logits(labels: Tensor, num_classes: int, correct_prob: float) -> Tensor:
    """log p_d for each label: log a on the true class, log((1 - a) / (K - 1)) elsewhere."""
    other = math.log((1.0 - correct_prob) / (num_classes - 1))
    logits = torch.full((labels.shape[0], num_classes), other, device=labels.device)
    return logits.scatter_(1, labels[:, None], math.log(correct_prob))


class VirtualTeacher:
    """A teacher made of labels: no parameters, no features, the same output every epoch."""

    def __init__(self, num_classes: int, correct_prob: float):
        self.num_classes, self.correct_prob = num_classes, correct_prob

    def __call__(self, batch) -> ModelOutput:
        return logits_teacher(virtual_logits(batch.y, self.num_classes, self.correct_prob))


def run_tfkd(cell) -> dict:
    cfg, data = cell.cfg, cell.data
    require_composable(cfg.loss, "scheme=self scheme.method=tfkd",
                       "a virtual distribution made from the label", logits_only=True,
                       instead="scheme.method=ban, byot or cskd")
    student = build_student(cell)
    teacher = VirtualTeacher(data.num_classes, cfg.scheme.correct_prob)
    probe_labels = torch.zeros(2, dtype=torch.long)
    teacher_probe = logits_teacher(virtual_logits(probe_labels, data.num_classes,
                                                  cfg.scheme.correct_prob))
    losses = assemble_losses(cell, cfg.loss, student, cfg.student.name, teacher_probe,
                             "virtual teacher")
    require_no_pretraining(losses, "scheme=self scheme.method=tfkd")
    summary = train(cell, Distiller(student, losses, teacher, ce_weight(cfg.loss)))
    return {**summary.as_dict(), "student_params": sum(p.numel() for p in student.parameters())}
