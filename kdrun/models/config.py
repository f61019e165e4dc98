"""Schema of the `teacher` and `student` groups: one model choice each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from kdrun.config.bounds import bounded
from kdrun.engine.config import OptimConfig, SchedConfig

PART = "a part index of data.partition (0..data.num_partitions-1), or null for the whole split"


@dataclass
class ModelConfig:
    name: str = MISSING               # zoo name, kdrun alias or any timm architecture
    pretrained: bool = False          # timm hub weights (needs internet; off by default)
    checkpoint: Optional[str] = None  # local weights file (loaded with weights_only=True)
    # null = the data's class count
    num_classes: Optional[int] = bounded(None, ge=2, why="or null for the data's class count")
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra builder arguments (drop_rate, ...)


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
