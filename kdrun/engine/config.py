"""Schemas of the `optim`, `sched`, `trainer`, `teacher` and `student` groups.

A teacher or student is a model choice (kdrun/models/config.py) plus what the engine does
with it: how a teacher is trained and cached, which data part a model is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from kdrun.config.bounds import bounded
from kdrun.models.config import ModelConfig

PART = "a part index of data.partition (0..data.num_partitions-1), or null for the whole split"


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
    # gradient accumulation: one optimizer step per this many batches (a larger effective batch)
    accumulate: int = bounded(1, ge=1)


@dataclass
class TeacherTrainConfig:
    """How kdrun trains a teacher it has no checkpoint for (apart from the student's trainer)."""

    # 0 = use the model as built (e.g. pretrained) untrained
    epochs: int = bounded(6, ge=0, why="0 uses the model as built (e.g. pretrained)")
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)


@dataclass
class TeacherConfig(ModelConfig):
    train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    cache: str = "auto"               # teacher-output cache: auto (where exact) | on | off
    # train the cached teacher on part i of data.partition (null = the whole train split)
    partition: Optional[int] = bounded(None, ge=0, why=PART)


@dataclass
class StudentConfig(ModelConfig):
    # start from this architecture trained on part i of data.partition with teacher.train
    # (cached like a teacher; Alballa & Canini 2024: KD between pre-trained models)
    partition: Optional[int] = bounded(None, ge=0, why=PART)
