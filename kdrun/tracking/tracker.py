"""One place the engine reports to: metrics.jsonl always, W&B when logger=wandb."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kdrun.tracking.config import LoggerConfig
from kdrun.tracking.metrics import METRICS_FILE, MetricsFile

log = logging.getLogger(__name__)


class Tracker:
    """Epoch records go to metrics.jsonl and W&B; a stage (e.g. a pre-training stage)
    gets its own metrics.<stage>.jsonl and `<stage>/`-prefixed W&B keys."""

    def __init__(self, cell_dir: Path, logger_cfg: LoggerConfig | None = None,
                 cache_dir: Path | None = None, name: str = "", config: dict[str, Any] | None = None,
                 group: str | None = None):
        self.cell_dir = Path(cell_dir)
        self.metrics = MetricsFile(self.cell_dir / METRICS_FILE)
        self.prefix = ""
        self.wandb = None
        if logger_cfg is not None and logger_cfg.name == "wandb":
            from kdrun.tracking.wandb_run import WandbRun

            self.wandb = WandbRun(logger_cfg, Path(cell_dir), Path(cache_dir or cell_dir), name,
                                  config or {}, group)
        elif logger_cfg is not None and logger_cfg.name != "none":
            from kdrun.config.errors import ConfigError

            raise ConfigError(f"logger.name={logger_cfg.name}: use logger=wandb or logger=none")

    def stage(self, name: str) -> "Tracker":
        """A tracker for one stage of this cell, sharing its W&B run; stages of a stage nest
        their names (metrics.gen1.pretrain_fitnet.jsonl, `gen1/pretrain_fitnet/` keys)."""
        path = f"{self.prefix.rstrip('/').replace('/', '.')}.{name}" if self.prefix else name
        child = Tracker.__new__(Tracker)
        child.cell_dir, child.wandb, child.prefix = self.cell_dir, self.wandb, f"{self.prefix}{name}/"
        child.metrics = MetricsFile(self.cell_dir / METRICS_FILE.replace(".jsonl", f".{path}.jsonl"))
        return child

    def resume_at(self, epoch: int) -> None:
        self.metrics.truncate_after(epoch)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        if self.wandb is not None:
            self.wandb.log({self.prefix + k: v for k, v in record.items()})

    def summarize(self, values: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summarize(values)

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb is not None:
            try:
                self.wandb.finish(exit_code)
            except Exception:  # a broken W&B must not hide the cell's own outcome
                log.exception("could not finish the W&B run")
            self.wandb = None
