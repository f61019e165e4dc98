"""ce: the label cross-entropy alone (no teacher); the baseline row of every table.

The cross-entropy term itself belongs to the engine (weight 1, or 1 - alpha when
kd is selected), so this method adds no term: selecting it trains a model alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss


@dataclass
class CEConfig(LossConfig):
    """No settings of its own (warmup_epochs only)."""


@register_loss
class CrossEntropyOnly(DistillationLoss):
    name = "ce"
    config = CEConfig
    needs_teacher = False
    requires = ()
    tasks = ("classification", "lm", "segmentation", "embed")

    def forward(self, student, teacher, batch):
        return {}
