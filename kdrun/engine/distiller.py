"""The training objective of one student: label CE plus the selected loss terms.

The teacher is held outside the module tree (a FrozenTeacher, kdrun/models/frozen.py,
is not an nn.Module attribute), so it never reaches the optimizer, the checkpoint or
train(): it runs in eval mode under no_grad and only serves outputs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn


from kdrun.models.output import ModelOutput


class Distiller(nn.Module):
    """terms(batch) = {"ce": w * CE(student, y), **each loss's named terms}.

    The engine sums the terms; every one is logged by name. Learnable parts of
    the losses (connectors, heads) are submodules, so they train and checkpoint
    with the student.
    """

    def __init__(self, student: nn.Module, losses: nn.ModuleDict | None = None,
                 teacher: Callable[[object], ModelOutput] | None = None, ce_weight: float = 1.0,
                 label_loss: Callable[[Tensor, object], Tensor] | None = None):
        super().__init__()
        self.student = student
        # the task's supervised term (class CE; token CE over scored tokens for task=lm)
        object.__setattr__(self, "label_loss", label_loss or _class_ce)
        self.losses = losses if losses is not None else nn.ModuleDict()
        self.ce_weight = ce_weight
        self.epoch = 0
        object.__setattr__(self, "teacher", teacher)  # not registered: frozen, not saved

    def set_epoch(self, epoch: int) -> None:
        """The loop tells the epoch, for the losses' warm-up ramps and the losses that follow
        a schedule of their own (CTKD's temperature curriculum: a `set_epoch` method)."""
        self.epoch = epoch
        for loss in self.losses.values():
            if hasattr(loss, "set_epoch"):
                loss.set_epoch(epoch)

    def predictor(self) -> nn.Module:
        """What evaluation scores: the student, or the student with the logits a loss
        substitutes (SimKD)."""
        return Predictor(self.student, self.losses)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        # the teacher first: run after the student's forward, with its activations held for
        # backward, the teacher's pass measured ~10% slower per step (benchmarks/bench_steps.py)
        teacher_out = self.teacher(batch) if self.teacher is not None else None
        return self.terms(batch, teacher_out)

    def terms(self, batch, teacher_out: ModelOutput | None) -> tuple[dict[str, Tensor], Tensor]:
        """The named terms of `batch` given the teacher's outputs on it, and the logits."""
        out = self.student(batch.x)
        terms: dict[str, Tensor] = {}
        if self.ce_weight > 0:
            terms["ce"] = self.ce_weight * self.label_loss(out.logits, batch)
        for name, loss in self.losses.items():
            ramp = loss.warmup_factor(self.epoch)
            for key, value in loss(out, teacher_out, batch).items():
                if key in terms:
                    raise RuntimeError(f"loss {name} returns a term {key!r} that another term "
                                       "already uses; term names must be unique")
                terms[key] = value if ramp == 1.0 else ramp * value
        # training accuracy counts the logits evaluation uses
        return terms, predicted_logits(self.losses, out).detach()


def _class_ce(logits: Tensor, batch) -> Tensor:
    return F.cross_entropy(logits, batch.y)


def predicted_logits(losses: nn.ModuleDict, out: ModelOutput) -> Tensor:
    """The student's own logits, unless a loss substitutes others (SimKD)."""
    for loss in losses.values():
        logits = loss.student_logits(out)
        if logits is not None:
            return logits
    return out.logits


class Predictor(nn.Module):
    """The student as evaluated: its own logits unless a loss supplies others."""

    def __init__(self, student: nn.Module, losses: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.losses = losses

    def forward(self, x: Tensor) -> ModelOutput:
        out = self.student(x)
        return replace(out, logits=predicted_logits(self.losses, out))


class PretrainStage(nn.Module):
    """One loss's stage before distillation (FitNet hints, AB/FSP initialisation, FT paraphraser).

    Trains only what the loss names in `pretrain_parameters`, on its `pretrain_terms`.
    """

    def __init__(self, distiller: Distiller, loss_name: str):
        super().__init__()
        self.student = distiller.student
        self.loss = distiller.losses[loss_name]
        object.__setattr__(self, "teacher", distiller.teacher)

    def trainable_parameters(self):
        return list(self.loss.pretrain_parameters(self.student))

    def predictor(self) -> nn.Module:
        return self.student

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        teacher_out = self.teacher(batch) if self.teacher is not None else None  # first, as above
        out = self.student(batch.x)
        return self.loss.pretrain_terms(out, teacher_out, batch), out.logits
