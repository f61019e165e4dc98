"""Offline distillation: a fixed, pre-trained teacher teaches the student.

The teacher comes from `teacher.checkpoint`, else from the teacher cache, else
it is trained once now (with teacher.train) and cached for every later cell.
"""

from __future__ import annotations

from kdrun.cache.teachers import TeacherRecord, obtain_teacher
from kdrun.config.schema import SchemeConfig
from kdrun.engine.distiller import FrozenTeacher
from kdrun.schemes.registry import register_scheme

register_scheme("offline", SchemeConfig)


def provide_teacher(cell) -> tuple[FrozenTeacher, TeacherRecord]:
    """The frozen teacher, serving cached outputs where teacher.cache allows (see cache/outputs.py)."""
    from kdrun.cache.outputs import cached_teacher, output_key, use_output_cache

    cfg = cell.cfg
    record = obtain_teacher(cfg.teacher, cfg.data, cell.data, cfg.seed, cell.cache_dir,
                            cell.device, progress=cfg.trainer.progress)
    record.model.to(cell.device)
    teacher = FrozenTeacher(record.model, cfg.teacher.name)
    train = cell.data.train
    if use_output_cache(cfg.teacher.cache, cfg.loss, cfg.data, train):
        views = getattr(train, "aug_views", None) or 1
        key = output_key(record.key, record.path, cfg.data, cfg.seed, views)
        teacher = cached_teacher(teacher, key, cell.cache_dir, train, views, cell.device)
    return teacher, record
