"""A W&B run per cell: offline by default, files inside the cell dir, always finished.

Offline runs keep no readable config or summary, which is why kdrun also writes
metrics.jsonl and result.json; this run is for the W&B UI after `wandb sync`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from kdrun.config.errors import ConfigError
from kdrun.tracking.config import LoggerConfig


def _wandb_env(cache_dir: Path) -> None:
    """Keep W&B's own cache/config/data dirs under paths.cache_dir unless the user chose them."""
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        if var not in os.environ:
            path = cache_dir / "wandb" / sub
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)


class WandbRun:
    def __init__(self, cfg: LoggerConfig, cell_dir: Path, cache_dir: Path, name: str,
                 config: dict[str, Any], group: str | None):
        if cfg.mode not in ("offline", "online"):
            raise ConfigError(f"logger.mode={cfg.mode}: use offline (default) or online, "
                              "or logger=none for no W&B run")
        import wandb

        _wandb_env(Path(cache_dir))
        # A stable id per cell dir: a resumed cell continues the same W&B run.
        run_id = hashlib.sha1(str(Path(cell_dir).resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group or group, tags=list(cfg.tags),
            name=name, id=run_id, resume="allow", dir=str(cell_dir), mode=cfg.mode,
            config=config, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                    disable_git=True, save_code=False))

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(record)

    def summarize(self, values: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in values.items()
                                 if isinstance(v, (int, float, str, bool)) or v is None})

    def finish(self, exit_code: int) -> None:
        self.run.finish(exit_code=exit_code)
