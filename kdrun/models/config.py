"""Schema of the `teacher` and `student` groups: one model choice each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from kdrun.engine.config import OptimConfig, SchedConfig


@dataclass
class ModelConfig:
    name: str = MISSING               # zoo name, kdrun alias or any timm architecture
    pretrained: bool = False          # timm hub weights (needs internet; off by default)
    checkpoint: Optional[str] = None  # local weights file (loaded with weights_only=True)
    num_classes: Optional[int] = None  # null = the data's class count
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra builder arguments (drop_rate, ...)


@dataclass
class TeacherTrainConfig:
    """How kdrun trains a teacher it has no checkpoint for (apart from the student's trainer)."""

    epochs: int = 6                   # 0 = use the model as built (e.g. pretrained) untrained
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)


@dataclass
class TeacherConfig(ModelConfig):
    train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    cache: str = "auto"               # teacher-output cache: auto (where exact) | on | off
    partition: Optional[int] = None   # train the cached teacher on part i of data.partition
                                      # (null = the whole train split)


@dataclass
class StudentConfig(ModelConfig):
    partition: Optional[int] = None   # start from this architecture trained on part i of
                                      # data.partition with teacher.train (cached like a teacher;
                                      # Alballa & Canini 2024: KD between pre-trained models)
