"""Checks that need more than the schema, run before anything trains.

Each failure is a ConfigError whose message names the key and the fix.
"""

from __future__ import annotations

from typing import Any

from kdrun.config.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "multistep", "constant")


def _check_optim(optim: Any, sched: Any, prefix: str) -> None:
    if optim.name not in OPTIMIZERS:
        raise ConfigError(f"{prefix}optim.name={optim.name}: unknown optimizer; use one of {', '.join(OPTIMIZERS)}")
    if not optim.lr > 0:
        raise ConfigError(f"{prefix}optim.lr={optim.lr} must be > 0")
    if sched.name not in SCHEDULES:
        raise ConfigError(f"{prefix}sched.name={sched.name}: unknown schedule; use one of {', '.join(SCHEDULES)}")


def validate_config(cfg: Any) -> None:
    """Everything that can be checked from the config alone (models are checked with the data)."""
    from kdrun.algorithms.registry import runner_for
    from kdrun.losses import needs_teacher, validate_losses

    validate_losses(cfg.loss)
    if cfg.trainer.epochs < 1:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs} must be >= 1")
    _check_optim(cfg.optim, cfg.sched, "")
    if needs_teacher(cfg.loss):
        if cfg.teacher.train.epochs < 0:
            raise ConfigError(f"teacher.train.epochs={cfg.teacher.train.epochs} must be >= 0")
        _check_optim(cfg.teacher.train.optim, cfg.teacher.train.sched, "teacher.train.")
        if cfg.teacher.cache not in ("auto", "on", "off"):
            raise ConfigError(f"teacher.cache={cfg.teacher.cache}: use auto, on or off")
    if cfg.logger.name not in ("wandb", "none"):
        raise ConfigError(f"logger.name={cfg.logger.name}: use logger=wandb or logger=none")
    runner_for(cfg.scheme.name, cfg.algorithm.name)
