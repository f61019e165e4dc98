"""The adversarial term: discriminators tell teacher from student outputs; the student fools them.
Not a `loss=` option: algorithm=adversarial adds it (its branches may read features too).

Each branch (the logits, the embedding, or a stage's feature map `features.<i>`) has
its own discriminator D. Every training step first updates every D on the detached
outputs (BCE: teacher = 1, student = 0) with its own Adam optimizer, then returns the
student's non-saturating GAN term  weight * BCE(D(student), 1)  (Goodfellow et al.
2014), which the engine adds to the selected loss terms. The D update happens inside
the forward pass because fit() owns one optimizer; the D parameters stay frozen
(requires_grad=False) outside their own step, so the student's optimizer never sees
them, and their optimizer's state travels in the module's state_dict (extra state),
so last.pt resumes exactly.

Conditional D (Xu et al. 2018 condition the discriminator, as in Mirza & Osindero's
cGAN): the label's one-hot vector is concatenated to D's input (vector branches) or
broadcast as extra channels (feature maps). Student outputs whose shape differs from
the teacher's pass through a learnable connector first (trained with the student).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss
from kdrun.losses.connectors import ConvConnector
from kdrun.models.output import ModelOutput


def branch_output(out: ModelOutput, branch: str) -> Tensor:
    """The tensor a branch name points at: logits, embedding or features.<i>."""
    if branch in ("logits", "embedding"):
        return getattr(out, branch)
    return out.features[int(branch.split(".", 1)[1])]


def check_branch(branch: str, probe: ModelOutput, role: str) -> None:
    if branch in ("logits", "embedding"):
        return
    head, _, index = branch.partition(".")
    try:
        ok = head == "features" and -len(probe.features) <= int(index) < len(probe.features)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"algorithm.branches entry {branch!r} is not a branch of the {role}: use "
                          f"logits, embedding or features.<i> with -{len(probe.features)} <= i < "
                          f"{len(probe.features)}")


class Discriminator(nn.Module):
    """Real (teacher) vs fake (student) logit for a vector or a feature map; no BatchNorm,
    so scoring the student's outputs leaves D unchanged."""

    def __init__(self, sample: Tensor, num_classes: int, conditional: bool, hidden: int):
        super().__init__()
        self.num_classes = num_classes if conditional else 0
        c = sample.shape[1] + self.num_classes
        if sample.dim() == 2:
            self.body = nn.Sequential(nn.Linear(c, hidden), nn.LeakyReLU(0.2),
                                      nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        else:  # feature map: strided convs, then global pooling (PatchGAN-like)
            self.body = nn.Sequential(nn.Conv2d(c, hidden // 2, 3, 2, 1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(hidden // 2, hidden, 3, 2, 1), nn.LeakyReLU(0.2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.num_classes:
            onehot = F.one_hot(y, self.num_classes).to(x.dtype)
            if x.dim() == 4:
                onehot = onehot[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, onehot], 1)
        return self.head(self.body(x)).squeeze(1)


def connector(student: Tensor, teacher: Tensor) -> nn.Module:
    if student.shape[1:] == teacher.shape[1:]:
        return nn.Identity()
    if student.dim() == 2:
        return nn.Linear(student.shape[1], teacher.shape[1])
    return ConvConnector(student, teacher)


class AdversarialTransfer(DistillationLoss):
    """Discriminators on `cfg.branches`; terms `adv_<branch>` for the student."""

    name = "adversarial"
    knowledge = "adversarial"
    requires = ()

    def __init__(self, cfg: Any, student: ModelOutput, teacher: ModelOutput, num_classes: int):
        super().__init__(cfg, student, teacher)
        self.branches = list(cfg.branches)
        self.keys = [b.replace(".", "_") for b in self.branches]  # ModuleDict keys have no dots
        self.connectors, self.discriminators = nn.ModuleDict(), nn.ModuleDict()
        for branch, key in zip(self.branches, self.keys):
            check_branch(branch, student, "student")
            check_branch(branch, teacher, "teacher")
            s, t = branch_output(student, branch), branch_output(teacher, branch)
            self.connectors[key] = connector(s, t)
            self.discriminators[key] = Discriminator(t, num_classes, cfg.conditional, cfg.hidden)
        self.discriminators.requires_grad_(False)
        self.d_optim = torch.optim.Adam(self.discriminators.parameters(), lr=cfg.d_lr,
                                        betas=(cfg.d_beta1, 0.999))
        self._reset_stats()

    def warmup_factor(self, epoch: int) -> float:
        return 1.0

    def _reset_stats(self) -> None:
        self.stats = torch.zeros(4, dtype=torch.float64)  # right on teacher, on student, loss, n

    def epoch_metrics(self) -> dict[str, float]:
        """Discriminator accuracy on this epoch's teacher / student outputs (before each
        step's D update) and its loss; read once per epoch, then reset."""
        right_t, right_s, loss, n = self.stats.tolist()
        self._reset_stats()
        if n == 0:
            return {}
        return {"disc_acc_teacher": 100 * right_t / n, "disc_acc_student": 100 * right_s / n,
                "disc_acc": 50 * (right_t + right_s) / n, "disc_loss": loss / n}

    def discriminator_step(self, student: dict[str, Tensor], teacher: dict[str, Tensor],
                           y: Tensor) -> None:
        self.discriminators.requires_grad_(True)
        try:
            for step in range(self.cfg.d_steps):
                loss = student_right = teacher_right = 0.0
                for key, d in self.discriminators.items():
                    real, fake = d(teacher[key], y), d(student[key], y)
                    loss = loss + F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) \
                        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
                    teacher_right = teacher_right + (real > 0).float().mean()
                    student_right = student_right + (fake < 0).float().mean()
                self.d_optim.zero_grad(set_to_none=True)
                loss.backward()
                self.d_optim.step()
                if step == 0:  # score D on the batch before it learned from it
                    k, n = len(self.keys), y.numel()
                    self.stats += torch.tensor([teacher_right.item() / k * n,
                                                student_right.item() / k * n,
                                                loss.item() / k * n, n], dtype=torch.float64)
        finally:
            self.d_optim.zero_grad(set_to_none=True)
            self.discriminators.requires_grad_(False)

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch) -> dict[str, Tensor]:
        s = {k: self.connectors[k](branch_output(student, b)) for b, k in zip(self.branches, self.keys)}
        t = {k: branch_output(teacher, b).detach() for b, k in zip(self.branches, self.keys)}
        if self.training:
            self.discriminator_step({k: v.detach() for k, v in s.items()}, t, batch.y)
        terms = {}
        for key, d in self.discriminators.items():
            fake = d(s[key], batch.y)
            terms[f"adv_{key}"] = self.cfg.weight * F.binary_cross_entropy_with_logits(
                fake, torch.ones_like(fake))
        return terms

    def get_extra_state(self) -> dict:
        return {"d_optim": self.d_optim.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.d_optim.load_state_dict(state["d_optim"])
