"""Declarative layer choice: pick stages by index and bring pairs to one size.

Two bases hold every method's stage selection, so no method picks or pairs stages itself:
- StagePairLoss: cfg.student_stages[j] paired with cfg.teacher_stages[j] (at, nst, sp, ...);
- StageLoss: one stage of each model, cfg.student_stage and cfg.teacher_stage (fitnet, ft, ickd;
  simkd reads the teacher's final map instead).
Indices are checked against the probe outputs when the loss is built, naming the key.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss
from kdrun.models.output import ModelOutput


def pick_stages(features: Sequence[Tensor], indices: Sequence[int], key: str) -> list[Tensor]:
    """features[i] for each i (negative counts from the deepest stage); `key` names the config entry."""
    n = len(features)
    for i in indices:
        if not -n <= i < n:
            raise ConfigError(f"{key}={list(indices)}: stage {i} does not exist; the model has "
                              f"{n} stages (0..{n - 1}, or -1..-{n} from the deepest)")
    return [features[i] for i in indices]


def pick_stage(features: Sequence[Tensor], index: int, key: str) -> Tensor:
    """features[index], checked as pick_stages does."""
    return pick_stages(features, [index], key)[0]


def check_pairing(student_stages: Sequence[int], teacher_stages: Sequence[int], key: str) -> None:
    if len(student_stages) != len(teacher_stages) or not student_stages:
        raise ConfigError(f"{key}.student_stages={list(student_stages)} and "
                          f"{key}.teacher_stages={list(teacher_stages)} must pair up one to one")


def match_spatial(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger map to the smaller one's size (cross-architecture pairs)."""
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    if (ha, wa) == (hb, wb):
        return a, b
    size = (min(ha, hb), min(wa, wb))
    if (ha, wa) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if (hb, wb) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


class StagePairLoss(DistillationLoss):
    """A method that compares stages in pairs: cfg.student_stages[j] with cfg.teacher_stages[j].

    `stage_field` names the ModelOutput list the stages come from (features, or
    preact_features for methods that read pre-ReLU maps). The indices are checked
    against the probe outputs when the loss is built and paired in `validate`.
    """

    stage_field: ClassVar[str] = "features"
    requires = ("features",)

    def __init__(self, cfg: Any, student: ModelOutput, teacher: ModelOutput | None,
                 context: Any = None):
        super().__init__(cfg, student, teacher, context)
        self.checked_stages(student, teacher)

    @classmethod
    def validate(cls, cfg: Any) -> None:
        super().validate(cfg)
        check_pairing(cfg.student_stages, cfg.teacher_stages, f"loss.{cls.name}")

    def stage_lists(self, student: ModelOutput,
                    teacher: ModelOutput) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """The lists the indices point into: `stage_field` of both models (override to differ)."""
        return getattr(student, self.stage_field), getattr(teacher, self.stage_field)

    def checked_stages(self, student: ModelOutput,
                       teacher: ModelOutput) -> tuple[list[Tensor], list[Tensor]]:
        """The paired stages of probe outputs, every index checked (for sizing connectors)."""
        s, t = self.stage_lists(student, teacher)
        return (pick_stages(s, self.cfg.student_stages, self.key("student_stages")),
                pick_stages(t, self.cfg.teacher_stages, self.key("teacher_stages")))

    def stages(self, student: ModelOutput,
               teacher: ModelOutput) -> tuple[list[Tensor], list[Tensor]]:
        """The paired stages of one forward: (student stages, teacher stages)."""
        s, t = self.stage_lists(student, teacher)
        return [s[i] for i in self.cfg.student_stages], [t[i] for i in self.cfg.teacher_stages]


class StageLoss(DistillationLoss):
    """A method that reads one stage of each model: cfg.student_stage of the student and
    cfg.teacher_stage of the teacher (a method that reads another teacher map overrides
    `teacher_stage`, as simkd does). Indices are checked on the probe outputs when the loss
    is built (and on every pick: one comparison)."""

    stage_field: ClassVar[str] = "features"
    requires = ("features",)

    def __init__(self, cfg: Any, student: ModelOutput, teacher: ModelOutput | None,
                 context: Any = None):
        super().__init__(cfg, student, teacher, context)
        self.student_stage(student)
        self.teacher_stage(teacher)

    def student_stage(self, student: ModelOutput) -> Tensor:
        return pick_stage(getattr(student, self.stage_field), self.cfg.student_stage,
                          self.key("student_stage"))

    def teacher_stage(self, teacher: ModelOutput) -> Tensor:
        return pick_stage(getattr(teacher, self.stage_field), self.cfg.teacher_stage,
                          self.key("teacher_stage"))
