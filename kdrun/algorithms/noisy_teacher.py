"""noisy_teacher: Sau & Balasubramanian, "Deep Model Compression: Distilling Knowledge from
Noisy Teachers" (arXiv 1610.09650, 2016).

The teacher's logits are perturbed during training, a regulariser that acts like several
teachers: for a fraction `probability` of the samples of a batch,
    z_t <- z_t * (1 + xi),   xi ~ N(0, std^2) per logit,
and every selected loss reads the perturbed output. Evaluation and the teacher's own
top-1 use the clean teacher. It composes with the teacher-output cache (the noise is
drawn after the stored logits are read) and resumes exactly (the draws come from the
global RNG, which last.pt restores).

    kdrun algorithm=noisy_teacher algorithm.std=0.2
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kdrun.config.bounds import bounded
from kdrun.engine.cell import offline_teacher
from kdrun.engine.plugins import Plugin, Teaching, register_algorithm
from kdrun.models.output import ModelOutput


@dataclass
class NoisyTeacherConfig:
    name: str = "noisy_teacher"
    std: float = bounded(0.1, ge=0, why="the relative logit noise sigma (0 = the plain teacher)")
    probability: float = bounded(0.5, ge=0, le=1, why="the fraction of samples perturbed")


class NoisyTeacher:
    """The teacher, with multiplicative Gaussian noise on the logits of some samples."""

    def __init__(self, teacher, std: float, probability: float):
        self.inner, self.model, self.name = teacher, teacher.model, teacher.name
        self.std, self.probability = std, probability

    def __call__(self, batch) -> ModelOutput:
        out = self.inner(batch)
        logits = out.logits
        noise = torch.randn_like(logits) * self.std
        chosen = torch.rand(logits.shape[0], 1, device=logits.device) < self.probability
        return replace(out, logits=torch.where(chosen, logits * (1 + noise), logits))


@register_algorithm
class NoisyTeacherKD(Plugin):
    """The offline teacher (`teacher`), wrapped so its logits carry noise while it teaches."""

    name = "noisy_teacher"
    config = NoisyTeacherConfig

    def teacher(self, cell) -> Teaching:
        algo = cell.cfg.algorithm
        teaching = offline_teacher(cell)
        return replace(teaching, teacher=NoisyTeacher(teaching.teacher, algo.std,
                                                      algo.probability))
