"""Adversarial distillation: a discriminator tells teacher from student outputs; the student
learns the selected loss terms and, at once, to fool it.

    kdrun algorithm=adversarial                                   # D on the logits (+ kd)
    kdrun algorithm=adversarial algorithm.branches=[logits,embedding,features.-1]   # multi-branch

Xu, Hsu & Huang, "Training Shallow and Thin Networks for Acceleration via Knowledge
Distillation with Conditional Adversarial Networks" (ICLR-W 2018): a conditional D on
the logits learns the loss that tells the student from the teacher. Wang et al.,
"KDGAN: Knowledge Distillation with Generative Adversarial Networks" (NeurIPS 2018):
the same game, with a distillation term beside the adversarial one. Multi-branch
transfer puts one D on each chosen output, as MEAL's block-wise discriminators (Shen
et al., "MEAL: Multi-Model Ensemble via Adversarial Learning", AAAI 2019).

The discriminators and their optimizer live in kdrun/losses/response/adversarial.py.
Each epoch logs disc_acc_teacher / disc_acc_student / disc_acc / disc_loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from kdrun.config.bounds import bounded
from kdrun.losses.response.adversarial import AdversarialTransfer
from kdrun.tracking.part_metrics import PartMetrics
from kdrun.config.errors import ConfigError
from kdrun.engine import distributed
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.losses import needs_teacher


@dataclass
class AdversarialConfig:
    """Xu et al. 2018 (conditional D on logits); Wang et al. 2018 (KDGAN); Shen et al. 2019
    (MEAL, one D per branch). D optimiser: Adam(2e-4, beta1 0.5), the DCGAN setting
    (Radford et al. 2016) these papers train their discriminators with."""

    name: str = "adversarial"
    branches: List[str] = field(default_factory=lambda: ["logits"])  # logits | embedding |
    #   features.<i> (a stage's map); more than one = multi-branch adversarial transfer
    conditional: bool = True          # D also sees the label (Xu et al.'s conditional D)
    weight: float = bounded(1.0, gt=0)  # weight of the student's adversarial term(s)
    hidden: int = bounded(256, gt=0)  # D width (2-layer MLP, or 2 strided convs for maps)
    d_lr: float = bounded(2e-4, gt=0)
    d_beta1: float = bounded(0.5, ge=0, lt=1)
    d_steps: int = bounded(1, gt=0)  # discriminator updates per student step


def check_config(cfg) -> None:
    algo = cfg.algorithm
    if not needs_teacher(cfg.loss):
        raise ConfigError("algorithm=adversarial needs a teacher: pick a loss that reads one "
                          "(e.g. loss=kd, the default); loss=ce selects no teacher")
    if not algo.branches:
        raise ConfigError("algorithm.branches is empty: give at least one, e.g. [logits]")
    if len(set(algo.branches)) != len(algo.branches):
        raise ConfigError(f"algorithm.branches={list(algo.branches)} names a branch twice")
    if distributed.world_size() > 1:
        raise ConfigError("algorithm=adversarial does not run data-parallel (torchrun): its "
                          "discriminator steps inside the objective; run it in one process")


@register_algorithm
class Adversarial(Plugin):
    """Discriminators as an extra objective term (`losses`), logged each epoch (`tracker`)."""

    name = "adversarial"
    config = AdversarialConfig

    def check(self, cell) -> None:
        check_config(cell.cfg)
        self.parts: list[AdversarialTransfer] = []
        # a branch on stage features needs the teacher live (the output cache has none)
        self.live_teacher = any(b.startswith("features") for b in cell.cfg.algorithm.branches)

    def losses(self, cell, losses, student_probe, teacher_probe):
        self.parts.append(AdversarialTransfer(cell.cfg.algorithm, student_probe, teacher_probe,
                                              cell.data.num_classes))
        losses["adversarial"] = self.parts[0]
        return losses

    def tracker(self, cell, objective):
        return PartMetrics(cell.tracker, lambda: self.parts)

    def result(self, cell, objective, result) -> dict:
        last = cell.tracker.metrics.read()[-1]  # the last epoch's discriminator
        return {**{k: last.get(k) for k in ("disc_acc", "disc_acc_teacher", "disc_acc_student")},
                "discriminator_params": sum(p.numel()
                                            for p in self.parts[0].discriminators.parameters()),
                "branches": list(cell.cfg.algorithm.branches)}
