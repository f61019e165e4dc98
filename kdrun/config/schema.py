"""The root config schema: the typed tree that conf/config.yaml fills in.

Groups with one shape (optim, sched, ...) are typed here; groups whose options
differ in shape (loss methods, schemes, algorithms, tasks, data: images or text) are
typed per option via the `schema/<group>/<name>` entries registered in kdrun.config.store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from kdrun.config.bounds import bounded
from kdrun.engine.config import (OptimConfig, SchedConfig, StudentConfig, TeacherConfig,
                                 TrainerConfig)
from kdrun.tracking.config import LoggerConfig


@dataclass
class PathsConfig:
    output_dir: str = "${kdrun.cwd:}/outputs"           # runs/ and multiruns/ live here
    cache_dir: str = "${paths.output_dir}/cache"        # trained teachers, teacher outputs


@dataclass
class SchemeConfig:
    name: str = "offline"


@dataclass
class AlgorithmConfig:
    name: str = "vanilla"


@dataclass
class Config:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: Dict[str, Any] = field(default_factory=dict)
    scheme: Any = None
    algorithm: Any = None
    task: Any = None        # typed per option: schema/task/<name> (kdrun.tasks)
    data: Any = None        # typed per option: schema/data/image | schema/data/text
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = bounded(0, ge=0, why="seeds data order, initialisation and augmentation")
