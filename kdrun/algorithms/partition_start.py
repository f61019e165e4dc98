"""A student that starts pre-trained on one part of the data (student.partition=i).

Alballa & Canini (2024) study KD between *pre-trained* models: the student may start
from a model first trained on another partition, not from scratch. kdrun trains that
start like a teacher (teacher.train, on part i, in the teacher cache: once per key)
and loads it into the student after the losses were checked, so bad config still
fails before anything trains.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kdrun.cache.teachers import start_from_partition
from kdrun.models.weights import load_weights


def start_student_from_partition(cell, student: nn.Module) -> dict[str, Any] | None:
    """Load the partition-trained start into `student`; result.json's `student_start`
    ({partition, source, key}), or None when student.partition is null."""
    cfg = cell.cfg
    _, record = start_from_partition(cfg.student, cfg.teacher, cfg.data, cell.data, cfg.seed,
                                     cell.cache_dir, cell.device, progress=cfg.trainer.progress)
    if record is None:
        return None
    load_weights(student, record.path, key="student.partition")
    return {"partition": cfg.student.partition, "source": record.source, "key": record.key}
