"""Vanilla offline distillation: one fixed teacher, one student, the selected terms summed."""

from __future__ import annotations

from dataclasses import replace

from kdrun.algorithms.partition_start import start_student_from_partition
from kdrun.algorithms.registry import register_algorithm, register_runner
from kdrun.cache.outputs import CachedTeacher
from kdrun.config.schema import AlgorithmConfig
from kdrun.data.partition_view import partition_bundle
from kdrun.engine.assemble import assemble_losses, build_student, probe_architecture, train
from kdrun.engine.distiller import Distiller
from kdrun.engine.evaluate import top1
from kdrun.losses import ce_weight, needs_teacher

register_algorithm("vanilla", AlgorithmConfig)


@register_runner("offline", "vanilla")
def distill_offline(cell) -> dict:
    cfg, data = cell.cfg, cell.data
    with_teacher = needs_teacher(cfg.loss)
    student = build_student(cell)
    teacher_probe = probe_architecture(cfg.teacher, "teacher", data) if with_teacher else None
    losses = assemble_losses(cell, cfg.loss, student, cfg.student.name, teacher_probe,
                             cfg.teacher.name if with_teacher else None)

    result: dict = {"teacher_top1": None, "teacher_source": None}
    start = start_student_from_partition(cell, student)
    teacher = None
    if with_teacher:
        from kdrun.schemes.offline import provide_teacher

        teacher, record = provide_teacher(cell)
        for loss in losses.values():
            loss.bind_teacher(teacher.model)
        result.update(teacher_source=record.source, teacher_key=record.key,
                      teacher_path=str(record.path), teacher_cache=isinstance(teacher, CachedTeacher),
                      teacher_top1=top1(teacher.model, data.test, cell.device))
    if start is not None:  # Alballa & Canini 2024: a pre-trained student distils on its own part
        result["student_start"] = start
        cell = replace(cell, data=partition_bundle(data, cfg.data, cfg.seed, cfg.student.partition))
    summary = train(cell, Distiller(student, losses, teacher, ce_weight(cfg.loss)))
    result.update(summary.as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    return result
