"""The loss contract: ModelOutputs (and the batch) in, named weighted terms out.

A loss never calls a model. It may own learnable parts (connectors, heads,
memory banks), which the engine puts in the optimizer, sized at build time from
probe outputs of one dummy forward of the student and the teacher.

Optional hooks a method overrides when its paper needs them:
- `ce_scale(cfg)`: factor on the engine's label cross-entropy (kd: 1 - alpha).
- `student_logits(out)`: the logits evaluation uses when the method changes how the
  student predicts (SimKD); None keeps the student's classifier.
- `bind_teacher(model)`: read-only pieces of the real teacher (e.g. its classifier),
  handed over once the teacher is trained; never trained or saved by the loss.
- `pretrain_epochs` / `pretrain_terms` / `pretrain_parameters`: a stage run before
  distillation (FitNet's hint stage, AB's and FSP's initialisation, FT's paraphraser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from torch import Tensor, nn

from kdrun.config.bounds import bounded, check_bounds
from kdrun.models.output import ModelOutput


@dataclass
class LossConfig:
    # ramp this method's terms linearly over the first epochs
    warmup_epochs: int = bounded(0, ge=0)


@dataclass(frozen=True)
class LossContext:
    """Facts about the data a loss may size itself by (memory banks, class priors)."""

    num_train: int                    # training samples; batch.index runs over 0..num_train-1
    num_classes: int
    in_chans: int = 3
    image_size: int = 32


class DistillationLoss(nn.Module):
    name: ClassVar[str]               # loss=<name>; the file is kdrun/losses/<knowledge>/<name>.py
    knowledge: ClassVar[str]          # set by register_loss from the folder ("none": no teacher)
    config: ClassVar[type]
    needs_teacher: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("logits",)  # ModelOutput fields the loss reads
    tasks: ClassVar[tuple[str, ...]] = ("classification",)  # the task=<name> it is written for

    def __init__(self, cfg: Any, student: ModelOutput, teacher: ModelOutput | None,
                 context: LossContext | None = None):
        super().__init__()
        self.cfg = cfg
        self.context = context

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """Check values before training; raise ConfigError naming `loss.<name>.<key>`."""
        check_bounds(cfg, f"loss.{cls.name}.")

    @classmethod
    def key(cls, field: str) -> str:
        return f"loss.{cls.name}.{field}"

    def warmup_factor(self, epoch: int) -> float:
        """min(1, (epoch + 1) / warmup_epochs) for 0-based `epoch` (DKD's linear warm-up)."""
        warmup = self.cfg.warmup_epochs
        return 1.0 if warmup <= 0 else min(1.0, (epoch + 1) / warmup)

    @classmethod
    def ce_scale(cls, cfg: Any) -> float:
        """Factor this method puts on the engine's label cross-entropy."""
        return 1.0

    def student_logits(self, student: ModelOutput) -> Tensor | None:
        """Logits the student predicts with, when the method changes them (SimKD reuses the
        teacher's classifier); None keeps the student's own classifier."""
        return None

    def bind_teacher(self, teacher: nn.Module) -> None:
        """Receive the trained, frozen teacher (store pieces with object.__setattr__)."""

    @property
    def pretrain_epochs(self) -> int:
        return 0

    def pretrain_terms(self, student: ModelOutput, teacher: ModelOutput | None,
                       batch: Any) -> dict[str, Tensor]:
        """Terms of the pre-distillation stage (default: the method's own terms)."""
        return self(student, teacher, batch)

    def pretrain_parameters(self, student: nn.Module) -> Iterable[nn.Parameter]:
        """What the pre-distillation stage trains (default: the student and this loss)."""
        return [*student.parameters(), *self.parameters()]

    def forward(self, student: ModelOutput, teacher: ModelOutput | None,
                batch: Any) -> dict[str, Tensor]:
        raise NotImplementedError
