"""Schemas of the `optim`, `sched` and `trainer` groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from kdrun.config.bounds import bounded


@dataclass
class OptimConfig:
    name: str = "sgd"                 # sgd | adam | adamw
    lr: float = bounded(0.05, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)    # sgd only
    nesterov: bool = False            # sgd only
    weight_decay: float = bounded(5e-4, ge=0)


@dataclass
class SchedConfig:
    name: str = "cosine"              # cosine | multistep | constant
    warmup_epochs: int = bounded(0, ge=0)         # linear warm-up from lr/10
    milestones: List[int] = bounded(factory=list, ge=1)  # multistep: epochs where lr *= gamma
    gamma: float = bounded(0.1, gt=0)
    min_lr: float = bounded(0.0, ge=0)            # cosine floor


@dataclass
class TrainerConfig:
    epochs: int = bounded(5, ge=1)
    device: str = "auto"              # auto (cuda if available) | cpu | cuda | cuda:1 ...
    threads: Optional[int] = bounded(None, ge=1)  # torch CPU threads (null = torch default)
    grad_clip: Optional[float] = bounded(None, gt=0)  # max grad norm (null = off)
    progress: bool = True             # tqdm bar with epoch, step, loss and accuracy
    amp: str = "off"                  # off | bf16 | fp16 autocast (off: no gain on this CPU)
    channels_last: bool = False       # NHWC memory format (helps on recent GPUs)
    scale_lr: bool = True             # under torchrun: lr x world size (linear scaling rule)
