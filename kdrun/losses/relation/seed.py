"""seed: Fang et al., "SEED: Self-supervised Distillation for Visual Representation" (ICLR 2021).

A frozen self-supervised teacher and the student see the same view of an image; both
embeddings are L2-normalised (the student's after a projection MLP to the teacher's width).
Each is compared with a queue D of the K most recent teacher embeddings plus the teacher's
embedding of the image itself, D+ = [z_T; d_1..d_K]; the student matches the teacher's
similarity distribution over D+:

    L = -sum_j softmax(z_T . D+ / tau_T)_j  log softmax(z_S . D+ / tau_S)_j

then the teacher's embeddings are enqueued (FIFO). With task=ssl's multi-crop views the pair
is taken on each global crop (the same crop for both models) and averaged; local crops are not
used, as in the paper. The queue starts as random unit vectors, as in the authors' code.

Settings: the authors' code uses K = 65536, tau_S = 0.2 and tau_T = 1e-4 (nearly one-hot on
the teacher's nearest entries); kdrun keeps tau_S = 0.2 and defaults to K = 1024 and tau_T = 0.01
for ~1,300 digits, where a near one-hot target mostly names the image's own entry.
Peers differ: CompRess (Abbasi Koohpayegani et al., NeurIPS 2020) is the same idea with the
teacher's memory bank as anchors and no own entry in the set; not implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def seed_logits(student: Tensor, teacher: Tensor, queue: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarities of unit student/teacher rows (B, d) to D+ = [teacher row; queue]:
    (B, 1 + K) each, column 0 the image's own teacher embedding."""
    own_s = (student * teacher).sum(1, keepdim=True)
    own_t = (teacher * teacher).sum(1, keepdim=True)
    return torch.cat([own_s, student @ queue.t()], 1), torch.cat([own_t, teacher @ queue.t()], 1)


def seed_loss(student: Tensor, teacher: Tensor, queue: Tensor, student_temperature: float,
              teacher_temperature: float) -> Tensor:
    """Batch mean of H(softmax(teacher sims / tau_T), softmax(student sims / tau_S))."""
    sims_s, sims_t = seed_logits(student, teacher, queue)
    target = F.softmax(sims_t / teacher_temperature, dim=1)
    return -(target * F.log_softmax(sims_s / student_temperature, dim=1)).sum(1).mean()


@dataclass
class SEEDConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    queue_size: int = bounded(1024, ge=1, why="K teacher embeddings kept (paper: 65536)")
    student_temperature: float = bounded(0.2, gt=0)
    teacher_temperature: float = bounded(0.01, gt=0, why="authors' code: 1e-4")
    hidden_dim: int = bounded(0, ge=0, why="student projection MLP width; 0 = the student's width")


@register_loss
class SEED(DistillationLoss):
    name = "seed"
    config = SEEDConfig
    uses_local_crops = False
    requires = ("embedding",)
    tasks = ("ssl",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        width_s = student.embedding.flatten(1).shape[1]
        width_t = teacher.embedding.flatten(1).shape[1]
        hidden = cfg.hidden_dim or width_s
        self.head = nn.Sequential(nn.Linear(width_s, hidden), nn.ReLU(), nn.Linear(hidden, width_t))
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, width_t), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, rows: Tensor) -> None:
        """FIFO: the newest rows replace the oldest (the last K when more than K come)."""
        rows = rows[-self.queue.shape[0]:]
        where = (self.queue_ptr + torch.arange(rows.shape[0], device=rows.device)) % self.queue.shape[0]
        self.queue[where] = rows
        self.queue_ptr.copy_((self.queue_ptr + rows.shape[0]) % self.queue.shape[0])

    def _pairs(self, student: list[Tensor], teacher: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return [(F.normalize(self.head(s), dim=1), F.normalize(t.detach(), dim=1))
                for s, t in zip(student, teacher)]

    def forward(self, student: list[Tensor], teacher: list[Tensor], batch) -> dict[str, Tensor]:
        pairs = self._pairs(student, teacher)
        queue = self.queue.clone()
        loss = torch.stack([seed_loss(s, t, queue, self.cfg.student_temperature,
                                      self.cfg.teacher_temperature) for s, t in pairs]).mean()
        if self.training:
            self.enqueue(torch.cat([t for _, t in pairs]))
        return {"seed": self.cfg.weight * loss}

    @torch.no_grad()
    def agreement(self, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
        """(B,) share of global crops where the student's most similar entry of D+ is the
        teacher's (usually the image's own embedding)."""
        hits = []
        for s, t in self._pairs(student[:len(teacher)], teacher):
            sims_s, sims_t = seed_logits(s, t, self.queue)
            hits.append((sims_s.argmax(1) == sims_t.argmax(1)).float())
        return torch.stack(hits).mean(0)
