"""Checks that need more than the schema, run before anything trains.

Each failure is a ConfigError whose message names the key and the fix.
"""

from __future__ import annotations

from typing import Any

from kdrun.config.bounds import check_bounds
from kdrun.config.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "multistep", "constant")


def _check_optim(optim: Any, sched: Any, prefix: str) -> None:
    if optim.name not in OPTIMIZERS:
        raise ConfigError(f"{prefix}optim.name={optim.name}: unknown optimizer; use one of {', '.join(OPTIMIZERS)}")
    if sched.name not in SCHEDULES:
        raise ConfigError(f"{prefix}sched.name={sched.name}: unknown schedule; use one of {', '.join(SCHEDULES)}")


def validate_config(cfg: Any) -> None:
    """Everything that can be checked from the config alone (models are checked with the data).

    First the declared bounds of every numeric field in the tree (kdrun/config/bounds.py),
    then what needs more than one field or a registry.
    """
    from kdrun.engine.plugins import plugins_for
    from kdrun.losses import needs_teacher, validate_losses

    check_bounds(cfg)
    validate_losses(cfg.loss)
    _check_optim(cfg.optim, cfg.sched, "")
    if needs_teacher(cfg.loss):
        _check_optim(cfg.teacher.train.optim, cfg.teacher.train.sched, "teacher.train.")
        if cfg.teacher.cache not in ("auto", "on", "off"):
            raise ConfigError(f"teacher.cache={cfg.teacher.cache}: use auto, on or off")
    if cfg.logger.name not in ("wandb", "none"):
        raise ConfigError(f"logger.name={cfg.logger.name}: use logger=wandb or logger=none")
    plugins_for(cfg.scheme.name, cfg.algorithm.name)


def unused_overrides(cfg: Any, overrides: list[str]) -> list[str]:
    """Warnings for overrides of the teacher when the chosen parts train none.

    teacher.name stays meaningful (a baseline cell keeps its pair's teacher in the table),
    so only the teacher's other settings are reported; recipes set them for every cell of a
    sweep, so this warns rather than refuses.
    """
    from kdrun.engine.plugins import ALGORITHMS
    from kdrun.losses import needs_teacher

    if cfg.scheme.name != "offline":
        why = f"scheme={cfg.scheme.name} trains no separate teacher"
    elif not needs_teacher(cfg.loss) and not ALGORITHMS[cfg.algorithm.name].teacher_required:
        why = f"loss={list(cfg.loss)} reads no teacher"
    else:
        return []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    return [f"{key} has no effect: {why}" for key in keys
            if key.startswith("teacher.") and key != "teacher.name"]
