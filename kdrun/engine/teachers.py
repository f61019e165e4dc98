"""Teachers for a cell: from teacher.checkpoint, the teacher cache, or trained here once.

The cache (kdrun/cache/teachers.py) stores and finds a teacher by content key; training
one on a miss is the engine's, so it is passed in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdrun.cache import teachers as cache
from kdrun.cache.teachers import TeacherRecord
from kdrun.engine.loop import fit
from kdrun.tasks import Task, task_for
from kdrun.tracking.tracker import Tracker


def trainer(device: torch.device, progress: bool = True, task: Task | None = None) -> cache.TrainTeacher:
    """Fit a teacher with its own teacher.train settings, resumably, into the cache entry."""
    task = task if task is not None else task_for()

    def train(model: torch.nn.Module, teacher_cfg: Any, data, ckpt_dir: Path) -> None:
        fit(task.supervised(model), data, epochs=teacher_cfg.train.epochs,
            optim=teacher_cfg.train.optim, sched=teacher_cfg.train.sched, ckpt_dir=ckpt_dir,
            tracker=Tracker(ckpt_dir.parent), device=device, progress=progress, desc="teacher",
            optim_key="teacher.train.optim", sched_key="teacher.train.sched",
            data_parallel=False, task=task)
    return train


def obtain_teacher(teacher_cfg: Any, data_cfg: Any, data, seed: int, cache_dir: Path,
                   device: torch.device, progress: bool = True,
                   checkpoint_key: str = "teacher.checkpoint",
                   task: Task | None = None) -> TeacherRecord:
    """The teacher from its checkpoint, the cache, or trained now and cached (on CPU)."""
    return cache.obtain_teacher(teacher_cfg, data_cfg, data, seed, cache_dir,
                                trainer(device, progress, task), checkpoint_key)


def start_from_partition(student_cfg: Any, teacher_cfg: Any, data_cfg: Any, data, seed: int,
                         cache_dir: Path, device: torch.device, progress: bool = True,
                         task: Task | None = None) -> tuple[Any, TeacherRecord | None]:
    """student.partition=i: the student's architecture trained on part i (cached like a teacher)."""
    return cache.start_from_partition(student_cfg, teacher_cfg, data_cfg, data, seed, cache_dir,
                                      trainer(device, progress, task))
