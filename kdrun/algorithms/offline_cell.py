"""An offline KD cell with hooks: vanilla's assembly, open to the algorithms that change one part.

vanilla calls it as is; graph adds a learned term and needs the teacher's live
features, adaptive swaps kd's fixed temperature for a learned one, nas brings its own
student. Each passes a hook here instead of repeating the assembly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from torch import nn

from kdrun.algorithms.partition_start import start_student_from_partition
from kdrun.cache.outputs import CachedTeacher
from kdrun.cache.teachers import obtain_teacher
from kdrun.data.partition_view import partition_bundle
from kdrun.engine.assemble import assemble_losses, build_student, probe, probe_architecture, train
from kdrun.engine.distiller import Distiller, FrozenTeacher
from kdrun.engine.evaluate import top1
from kdrun.losses import ce_weight, needs_teacher
from kdrun.models.output import ModelOutput

# (losses, student probe, teacher probe) -> losses; the probes size any added module
LossHook = Callable[[nn.ModuleDict, ModelOutput, ModelOutput | None], nn.ModuleDict]


def live_teacher(cell) -> tuple[FrozenTeacher, object]:
    """The frozen teacher running live (never the output cache, which holds no features)."""
    cfg = cell.cfg
    record = obtain_teacher(cfg.teacher, cfg.data, cell.data, cfg.seed, cell.cache_dir,
                            cell.device, progress=cfg.trainer.progress)
    record.model.to(cell.device)
    return FrozenTeacher(record.model, cfg.teacher.name), record


def distill(cell, *, student: nn.Module | None = None, student_name: str | None = None,
            adjust_losses: LossHook | None = None, teacher_required: bool = False,
            features_needed: bool = False,
            distiller_cls: type[Distiller] = Distiller) -> tuple[dict, Distiller]:
    """Train one student with the selected loss terms (as vanilla), after `adjust_losses`.

    teacher_required: a teacher is used even when no selected method needs one (graph).
    features_needed: the teacher runs live so its stage features reach the losses.
    Returns the result.json keys and the trained objective.
    """
    cfg, data = cell.cfg, cell.data
    with_teacher = teacher_required or needs_teacher(cfg.loss)
    student = student if student is not None else build_student(cell)
    name = student_name or cfg.student.name
    student_probe = probe(student, data)
    teacher_probe = probe_architecture(cfg.teacher, "teacher", data) if with_teacher else None
    losses = assemble_losses(cell, cfg.loss, student, name, teacher_probe,
                             cfg.teacher.name if with_teacher else None)
    if adjust_losses is not None:
        losses = adjust_losses(losses, student_probe, teacher_probe)

    result: dict = {"teacher_top1": None, "teacher_source": None}
    start = start_student_from_partition(cell, student)  # after the losses: bad config fails first
    teacher = None
    if with_teacher:
        if features_needed:
            teacher, record = live_teacher(cell)
        else:
            from kdrun.schemes.offline import provide_teacher

            teacher, record = provide_teacher(cell)
        for loss in losses.values():
            loss.bind_teacher(teacher.model)
        result.update(teacher=cfg.teacher.name, teacher_source=record.source,
                      teacher_key=record.key, teacher_path=str(record.path),
                      teacher_cache=isinstance(teacher, CachedTeacher),
                      teacher_top1=top1(teacher.model, data.test, cell.device))
    if start is not None:  # Alballa & Canini 2024: a pre-trained student distils on its own part
        result["student_start"] = start
        cell = replace(cell, data=partition_bundle(data, cfg.data, cfg.seed, cfg.student.partition))
    objective = distiller_cls(student, losses, teacher, ce_weight(cfg.loss))
    summary = train(cell, objective)
    result.update(summary.as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    return result, objective
