"""Schemas of the `optim`, `sched` and `trainer` groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class OptimConfig:
    name: str = "sgd"                 # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9             # sgd only
    nesterov: bool = False            # sgd only
    weight_decay: float = 5e-4


@dataclass
class SchedConfig:
    name: str = "cosine"              # cosine | multistep | constant
    warmup_epochs: int = 0            # linear warm-up from lr/10
    milestones: List[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    min_lr: float = 0.0               # cosine floor


@dataclass
class TrainerConfig:
    epochs: int = 5
    device: str = "auto"              # auto (cuda if available) | cpu | cuda | cuda:1 ...
    threads: Optional[int] = None     # torch CPU threads (null = torch default)
    grad_clip: Optional[float] = None  # max grad norm (null = off)
    progress: bool = True             # tqdm bar with epoch, step, loss and accuracy
    amp: str = "off"                  # off | bf16 | fp16 autocast (off: no gain on this CPU)
    channels_last: bool = False       # NHWC memory format (helps on recent GPUs)
    scale_lr: bool = True             # under torchrun: lr x world size (linear scaling rule)
