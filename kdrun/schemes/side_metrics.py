"""Score more than the student each epoch: peers, early exits, an ensemble.

fit() evaluates the objective's student; a scheme that trains several models in
one objective wraps the cell's tracker in a SideMetrics, which adds
`<name>/val_top1` and `<name>/test_top1` for each extra model to every epoch's
record (metrics.jsonl and W&B). Evaluation draws no random numbers, so resume
stays exact, and the per-model summaries are read back from metrics.jsonl, so a
resumed cell reports the epochs it ran before the interruption too.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.engine import distributed
from kdrun.engine.evaluate import top1
from kdrun.models.output import ModelOutput


class SideMetrics:
    """A Tracker that also evaluates `models` (name -> module returning ModelOutput)."""

    def __init__(self, tracker, models: Mapping[str, nn.Module], data, device: torch.device):
        if distributed.is_active():  # only rank 0 logs, so it cannot gather the other shards
            raise ConfigError(f"scoring {', '.join(models)} each epoch is not supported under "
                              "torchrun yet: run this scheme on one device (without torchrun)")
        self.tracker, self.models, self.data, self.device = tracker, dict(models), data, device

    def resume_at(self, epoch: int) -> None:
        self.tracker.resume_at(epoch)

    def stage(self, name: str):
        return self.tracker.stage(name)

    def log_epoch(self, record: dict[str, Any]) -> None:
        for name, model in self.models.items():
            record[f"{name}/val_top1"] = top1(model, self.data.val, self.device)
            record[f"{name}/test_top1"] = top1(model, self.data.test, self.device)
        self.tracker.log_epoch(record)

    def records(self) -> list[dict[str, Any]]:
        return self.tracker.metrics.read()


def summarize(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The DESIGN.md accuracies of one side model: last-epoch test, test at its own best
    validation epoch (first one on ties, as fit), best validation."""
    val = [r[f"{name}/val_top1"] for r in records]
    test = [r[f"{name}/test_top1"] for r in records]
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    return {"student_top1": test[-1], "best_student_top1": test[best], "val_top1": val[best],
            "best_epoch": records[best]["epoch"]}


class LogitsView(nn.Module):
    """Evaluate a derived prediction (an exit, an ensemble) as if it were a model."""

    def __init__(self, owner: nn.Module, logits: Callable[[Tensor], Tensor]):
        super().__init__()
        object.__setattr__(self, "owner", owner)  # not a submodule: the owner is saved elsewhere
        self.logits = logits

    def train(self, mode: bool = True) -> "LogitsView":
        self.owner.train(mode)
        return super().train(mode)

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(logits=self.logits(x), features=[], embedding=None)
