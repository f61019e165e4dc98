"""Per-epoch metrics of an objective's learnable parts, logged beside the engine's."""

from __future__ import annotations

from typing import Any


class PartMetrics:
    """A Tracker that adds the `epoch_metrics()` of learnable parts (a discriminator's
    accuracy) to every epoch record fit() logs (metrics.jsonl and W&B)."""

    def __init__(self, tracker, parts):
        self.tracker, self.parts = tracker, parts  # parts: a callable returning the modules

    def resume_at(self, epoch: int) -> None:
        self.tracker.resume_at(epoch)

    def stage(self, name: str):
        return self.tracker.stage(name)

    def log_epoch(self, record: dict[str, Any]) -> None:
        for part in self.parts():
            if hasattr(part, "epoch_metrics"):
                record.update(part.epoch_metrics())
        self.tracker.log_epoch(record)

    def __getattr__(self, name: str):  # summarize, finish, metrics, ... as the wrapped tracker
        return getattr(self.tracker, name)
