"""The training objective of task=ssl: the models run on a batch's multi-crop views, the
label-free losses compare their embeddings.

    global crops -> student (one forward for all of them), local crops -> student (another,
    only when a loss uses them); global crops -> the EMA student (losses with ema_teacher,
    e.g. dino) and -> the frozen teacher (losses that need one, e.g. seed)
    -> each loss(student embeddings per crop, teacher embeddings per global crop, batch)

The EMA student and its step count are submodule and buffer, so last.pt holds them and a
resumed cell continues the same average. Its momentum follows a cosine from the EMA loss's
`momentum` to 1 over `total_steps` (constant when the run's length is not known: a teacher
trained through Task.supervised, which receives the model alone). The labels are never read.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from kdrun.data.batch import Batch
from kdrun.losses.response.dino import ema_


class SSLObjective(nn.Module):
    """batch -> ({loss terms}, agreement per sample); `student` is what is scored and kept."""

    def __init__(self, student: nn.Module, losses: nn.ModuleDict, teacher: Any = None,
                 total_steps: int | None = None):
        super().__init__()
        self.student = student
        self.losses = losses
        object.__setattr__(self, "teacher", teacher)  # frozen, served; never trained or saved
        ema_losses = [loss for loss in losses.values() if getattr(loss, "ema_teacher", False)]
        self.momentum = ema_losses[0].cfg.momentum if ema_losses else None
        self.ema = copy.deepcopy(student).requires_grad_(False) if ema_losses else None
        self.total_steps = total_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def set_epoch(self, epoch: int) -> None:
        for loss in self.losses.values():
            if hasattr(loss, "set_epoch"):
                loss.set_epoch(epoch)

    def ema_momentum(self) -> float:
        """DINO's schedule: 1 - (1 - m0) (cos(pi k / K) + 1) / 2 at step k of K."""
        if not self.total_steps:
            return self.momentum
        progress = min(int(self.step) / self.total_steps, 1.0)
        return 1 - (1 - self.momentum) * (math.cos(math.pi * progress) + 1) / 2

    def _update_ema(self) -> None:
        """Fold the student's last optimizer step into the EMA (here, before the next step's
        forward, as the loop gives the objective no after-step hook)."""
        if self.ema is None or not self.training:
            return
        if int(self.step) > 0:
            m = self.ema_momentum()
            ema_(self.ema, self.student, m)
            for loss in self.losses.values():
                if hasattr(loss, "update_teacher"):
                    loss.update_teacher(m)
        self.step += 1

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        self._update_ema()
        g = batch.num_global
        globals_, locals_ = batch.crops[:g], batch.crops[g:]
        sizes = [c.shape[0] for c in globals_]
        student = list(self.student(torch.cat(globals_)).embedding.flatten(1).split(sizes))
        if locals_ and any(getattr(loss, "uses_local_crops", False) for loss in self.losses.values()):
            student += list(self.student(torch.cat(locals_)).embedding.flatten(1).split(
                [c.shape[0] for c in locals_]))
        ema_out = teacher_out = None
        if self.ema is not None:
            with torch.no_grad():
                ema_out = list(self.ema(torch.cat(globals_)).embedding.flatten(1).split(sizes))
        if self.teacher is not None:
            views = Batch(torch.cat(globals_), batch.y.repeat(g), batch.index.repeat(g))
            teacher_out = list(self.teacher(views).embedding.flatten(1).split(sizes))
        terms: dict[str, Tensor] = {}
        agreement = None
        for loss in self.losses.values():
            own = ema_out if getattr(loss, "ema_teacher", False) else teacher_out
            if agreement is None:  # before the loss moves its centre or queue
                agreement = loss.agreement(student, own)
            terms.update(loss(student, own, batch))
        return terms, agreement
