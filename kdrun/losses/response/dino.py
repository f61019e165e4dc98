"""dino: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (ICCV 2021).

Self-distillation with no labels. A projection head (3-layer MLP, GELU, an L2-normalised
bottleneck, then K prototypes with unit-norm weights: the paper's weight-normalised last layer
with its norm fixed) maps every crop's embedding to K scores. The teacher is an exponential
moving average of the student (backbone: the task's objective keeps it; head: this loss keeps
`teacher_head`), momentum following a cosine from `momentum` to 1 over the run. The teacher's
scores on the global crops are centred (c <- m c + (1 - m) mean of the batch's teacher scores,
m = center_momentum) and sharpened (softmax at teacher_temperature); the student's scores on
every other crop (global and local) are softened at student_temperature; the loss is

    sum over teacher crops t and student crops s != t of  H(P_t, P_s) = -sum_k P_t,k log P_s,k

averaged over those pairs and the batch. Centring stops one prototype from taking over,
sharpening stops the uniform collapse. teacher_temperature warms linearly from
warmup_teacher_temperature over warmup_teacher_temperature_epochs (paper: 0.04 -> 0.07 over 30).

Inputs differ from the image losses': per crop embeddings (task=ssl's objective runs the
models on the views), `teacher` being the EMA student's embeddings of the global crops.
Peers differ: the authors' code weight-normalises the prototypes with torch's weight_norm and
freezes them in the first epoch; kdrun normalises them in the forward pass and does not freeze.
The paper's head is 2048 wide with a 256 bottleneck and K = 65536; the defaults here fit 10-class
32 px digits on a CPU (256, 64, K = 256).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


def dino_loss(student: list[Tensor], teacher: list[Tensor], center: Tensor,
              student_temperature: float, teacher_temperature: float) -> Tensor:
    """Mean over pairs (t, s), s != t, of the batch mean of H(softmax((teacher[t] - center) /
    tau_t), softmax(student[s] / tau_s)); student[:len(teacher)] are the same crops as teacher."""
    targets = [F.softmax((t - center) / teacher_temperature, dim=1) for t in teacher]
    log_probs = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    terms = [-(q * log_p).sum(1).mean() for i, q in enumerate(targets)
             for j, log_p in enumerate(log_probs) if j != i]
    return torch.stack(terms).mean()


def ema_(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * source, parameter by parameter."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


class DINOHead(nn.Module):
    """MLP (GELU) -> L2-normalised bottleneck -> cosine scores against K unit prototypes."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int,
                 batchnorm: bool = False):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden_dim)) if batchnorm else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), norm(), nn.GELU(),
                                 nn.Linear(hidden_dim, hidden_dim), norm(), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck_dim) / bottleneck_dim ** 0.5)

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=1)
        return z @ F.normalize(self.prototypes, dim=1).t()


@dataclass
class DINOConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    out_dim: int = bounded(256, ge=2, why="K prototypes (paper: 65536)")
    hidden_dim: int = bounded(256, ge=1, why="head width (paper: 2048)")
    bottleneck_dim: int = bounded(64, ge=1, why="paper: 256")
    head_batchnorm: bool = True       # BN in the head's MLP (the authors' use_bn_in_head option)
    student_temperature: float = bounded(0.1, gt=0)
    teacher_temperature: float = bounded(0.04, gt=0, why="below student_temperature: it sharpens")
    warmup_teacher_temperature: float = bounded(0.04, gt=0)
    warmup_teacher_temperature_epochs: int = bounded(0, ge=0)
    center_momentum: float = bounded(0.9, ge=0, lt=1)
    # EMA teacher: momentum per step, cosine from this value to 1 over the run (paper: 0.996)
    momentum: float = bounded(0.996, ge=0, le=1, why="the teacher's EMA momentum at the start")


@register_loss
class DINO(DistillationLoss):
    name = "dino"
    config = DINOConfig
    needs_teacher = False          # the teacher is the student's own moving average
    ema_teacher = True             # task=ssl's objective keeps the EMA backbone and feeds it here
    uses_local_crops = True
    requires = ("embedding",)
    tasks = ("ssl",)

    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        width = student.embedding.flatten(1).shape[1]
        self.head = DINOHead(width, cfg.hidden_dim, cfg.bottleneck_dim, cfg.out_dim,
                             cfg.head_batchnorm)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def teacher_temperature(self) -> float:
        cfg = self.cfg
        if self.epoch >= cfg.warmup_teacher_temperature_epochs:
            return cfg.teacher_temperature
        start, end = cfg.warmup_teacher_temperature, cfg.teacher_temperature
        return start + (end - start) * self.epoch / cfg.warmup_teacher_temperature_epochs

    def update_teacher(self, momentum: float) -> None:
        """The teacher head's EMA step (the objective moves the backbone's alongside)."""
        ema_(self.teacher_head, self.head, momentum)

    def _scores(self, student: list[Tensor], teacher: list[Tensor]) -> tuple[list, list]:
        s = self.head(torch.cat(student)).split([x.shape[0] for x in student])
        with torch.no_grad():
            t = self.teacher_head(torch.cat(teacher)).split([x.shape[0] for x in teacher])
        return list(s), list(t)

    def forward(self, student: list[Tensor], teacher: list[Tensor], batch) -> dict[str, Tensor]:
        s, t = self._scores(student, teacher)
        loss = dino_loss(s, t, self.center, self.cfg.student_temperature,
                         self.teacher_temperature())
        if self.training:
            with torch.no_grad():
                batch_center = torch.cat(t).mean(0, keepdim=True)
                self.center.mul_(self.cfg.center_momentum).add_(
                    batch_center, alpha=1 - self.cfg.center_momentum)
        return {"dino": self.cfg.weight * loss}

    @torch.no_grad()
    def agreement(self, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
        """(B,) share of cross-view pairs of global crops where the student's top prototype is
        the teacher's."""
        s, t = self._scores(student[:len(teacher)], teacher)
        hits = [(s[j].argmax(1) == q.argmax(1)).float() for i, q in enumerate(t)
                for j in range(len(s)) if j != i]
        return torch.stack(hits).mean(0) if hits else torch.zeros(t[0].shape[0])
