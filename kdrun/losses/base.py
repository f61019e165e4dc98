"""The loss contract: ModelOutputs (and the batch) in, named weighted terms out.

A loss never calls a model. It may own learnable parts (connectors, heads,
memory banks), which the engine puts in the optimizer, sized at build time from
probe outputs of one dummy forward of the student and the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import MISSING
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.models.output import ModelOutput


@dataclass
class LossConfig:
    knowledge: str = MISSING          # response | feature | relation | none (fixed per method)


class DistillationLoss(nn.Module):
    name: ClassVar[str]
    knowledge: ClassVar[str]
    config: ClassVar[type]
    needs_teacher: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("logits",)  # ModelOutput fields the loss reads

    def __init__(self, cfg: Any, student: ModelOutput, teacher: ModelOutput | None):
        super().__init__()
        self.cfg = cfg

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """Check values before training; raise ConfigError naming `loss.<name>.<key>`."""
        if cfg.knowledge != cls.knowledge:
            raise ConfigError(f"loss.{cls.name}.knowledge={cfg.knowledge} is fixed by the method: "
                              f"remove the override (it is {cls.knowledge})")

    @classmethod
    def key(cls, field: str) -> str:
        return f"loss.{cls.name}.{field}"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None,
                batch: Any) -> dict[str, Tensor]:
        raise NotImplementedError


def require_positive(cls: type[DistillationLoss], cfg: Any, field: str, hint: str = "") -> None:
    value = getattr(cfg, field)
    if not value > 0:
        raise ConfigError(f"{cls.key(field)}={value} must be > 0{': ' + hint if hint else ''}")


def require_unit_interval(cls: type[DistillationLoss], cfg: Any, field: str) -> None:
    value = getattr(cfg, field)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{cls.key(field)}={value} must be within [0, 1]: it weighs the "
                          "distillation term against the label cross-entropy")
