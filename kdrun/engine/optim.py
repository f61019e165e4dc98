"""Optimizer and per-epoch learning-rate schedule from their configs."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from kdrun.config.errors import ConfigError
from kdrun.engine.config import OptimConfig, SchedConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig, key: str = "optim",
                    lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """`lr_scale` multiplies cfg.lr (the linear scaling rule under data-parallel training)."""
    params = [p for p in params if p.requires_grad]
    if cfg.lr <= 0:
        raise ConfigError(f"{key}.lr={cfg.lr} must be > 0")
    lr = cfg.lr * lr_scale
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"{key}.name={cfg.name}: unknown optimizer; use sgd, adam or adamw")


def lr_factor(epoch: int, epochs: int, cfg: SchedConfig, base_lr: float) -> float:
    """Multiplier of the base lr during `epoch` (0-based); stepped once per epoch."""
    if epoch < cfg.warmup_epochs:
        return 0.1 + 0.9 * epoch / cfg.warmup_epochs
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        span = max(1, epochs - cfg.warmup_epochs)
        progress = (epoch - cfg.warmup_epochs) / span
        floor = cfg.min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ConfigError(f"sched.name={cfg.name}: unknown schedule; use cosine, multistep or constant")


def build_scheduler(optimizer: torch.optim.Optimizer, epochs: int, cfg: SchedConfig,
                    key: str = "sched") -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.warmup_epochs < 0 or (cfg.warmup_epochs and cfg.warmup_epochs >= epochs):
        raise ConfigError(f"{key}.warmup_epochs={cfg.warmup_epochs} must be in [0, epochs)")
    base_lr = optimizer.param_groups[0]["lr"]
    lr_factor(0, epochs, cfg, base_lr)  # fail early on an unknown name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: lr_factor(epoch, epochs, cfg, base_lr))
