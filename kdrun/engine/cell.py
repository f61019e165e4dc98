"""One cell, start to finish, read top to bottom:

    run_cell:        skip if completed -> validate -> data -> tracker -> build_and_train -> result.json
    build_and_train: plug-ins check -> student -> teacher probe -> objective terms (losses)
                     -> teacher (trained, cached or loaded) -> objective -> fit -> result keys

Schemes and algorithms change a step through the extension points of kdrun/engine/plugins.py
(found in its registries, never imported here). A completed cell is skipped when run again;
an unfinished one resumes from its last.pt; a failed one runs again. Whatever happens,
result.json says so and the W&B run is finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.config.validate import unused_overrides, validate_config
from kdrun.data.partition_view import partition_bundle, write_partitions
from kdrun.engine import distributed
from kdrun.engine.assemble import (assemble_losses, build_student, probe, probe_architecture,
                                   train)
from kdrun.engine.device import pick_device, set_threads
from kdrun.engine.plugins import Teaching, plugins_for
from kdrun.engine.teachers import obtain_teacher, start_from_partition
from kdrun.losses import ce_weight, needs_teacher
from kdrun.models.build import check_model_config
from kdrun.models.frozen import FrozenTeacher
from kdrun.models.weights import load_weights
from kdrun.tasks import Task, task_for
from kdrun.tasks.classification import CLASSIFICATION
from kdrun.tracking.result import read_result, write_result
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """What the builder and the plug-ins share: the config, where to write, data and device."""

    cfg: DictConfig
    dir: Path
    data: Any
    device: torch.device
    tracker: Tracker
    cache_dir: Path
    task: Task = CLASSIFICATION


def identity(cfg: DictConfig, overrides: list[str], task: Task) -> dict[str, Any]:
    """The result.json keys that say which cell this is (DESIGN.md).

    `teacher` is the configured teacher even when no loss needs it (loss=ce), so a
    baseline cell sits in its pair's row of a table; teacher_source stays null then.
    """
    teacher = None if OmegaConf.is_missing(cfg.teacher, "name") else cfg.teacher.name
    return {"teacher": teacher,
            "student": None if OmegaConf.is_missing(cfg.student, "name") else cfg.student.name,
            "loss": list(cfg.loss.keys()), "scheme": cfg.scheme.name,
            "algorithm": cfg.algorithm.name, "task": task.name,
            "data": cfg.data.name, "seed": cfg.seed, "overrides": list(overrides)}


def _build_data(cfg: DictConfig, task: Task):
    try:
        return task.build_data(cfg.data, cfg.seed)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        raise ConfigError(str(e)) from None


def run_cell(cfg: DictConfig, cell_dir: Path, overrides: list[str],
             group: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one cell into `cell_dir`; `extra` keys (e.g. placement) go into result.json."""
    cell_dir = Path(cell_dir)
    prior = read_result(cell_dir)
    if prior is not None and prior.get("status") == "completed":
        log.info("cell %s is completed: skipping", cell_dir)
        return {**prior, "skipped": True}
    started = time.time()
    task = task_for(cfg.task)
    result: dict[str, Any] = {"status": "running", **identity(cfg, overrides, task),
                              **task.empty_result(), "teacher_source": None, "epochs_done": 0,
                              **(extra or {})}
    tracker: Tracker | None = None
    exit_code = 1
    try:
        validate_config(cfg)
        for warning in unused_overrides(cfg, overrides):
            log.warning(warning)
        set_threads(cfg.trainer.threads)
        device = pick_device(cfg.trainer.device)
        data = _build_data(cfg, task)
        if distributed.is_main() and getattr(cfg.data, "partition", "none") != "none":
            write_partitions(cell_dir, cfg.data, data, cfg.seed)  # partitions.json
        check_model_config(cfg.student, "student", data.num_classes)
        if needs_teacher(cfg.loss):
            check_model_config(cfg.teacher, "teacher", data.num_classes)
        task.check(cfg, data, needs_teacher(cfg.loss))
        cache_dir = Path(cfg.paths.cache_dir)
        main = distributed.is_main()  # under torchrun only rank 0 writes
        if main:
            write_result(cell_dir, result)
        tracker = Tracker(cell_dir, cfg.logger if main else None, cache_dir, name=cell_dir.name,
                          config=OmegaConf.to_container(cfg, resolve=True), group=group)
        result.update(build_and_train(Cell(cfg, cell_dir, data, device, tracker, cache_dir, task)))
        result["status"] = "completed"
        result["elapsed_s"] = time.time() - started
        if distributed.world_size() > 1:
            result["world_size"] = distributed.world_size()
        tracker.summarize(result)
        if distributed.is_main():
            write_result(cell_dir, result)
        exit_code = 0
        return result
    except BaseException as e:
        result.update(status="failed", error=f"{type(e).__name__}: {e}",
                      elapsed_s=time.time() - started)
        if distributed.is_main():
            write_result(cell_dir, result)
        raise
    finally:
        if tracker is not None:
            tracker.finish(exit_code)


def first(answers):
    """The first plug-in answer that is not None (the algorithm's, then the scheme's)."""
    return next((a for a in answers if a is not None), None)


def build_and_train(cell: Cell) -> dict[str, Any]:
    """The distillation job of one cell; returns its result.json keys (identity aside)."""
    cfg = cell.cfg
    parts = plugins_for(cfg.scheme.name, cfg.algorithm.name)
    for part in parts:
        part.check(cell)
    learned = first(part.learn(cell) for part in parts) or cell.task.learn(cell)
    if learned is not None:
        return learned

    with_teacher = any(p.teacher_required for p in parts) or needs_teacher(cfg.loss)
    own_data = first(p.data(cell) for p in parts)  # the student's own view (cross-modal)
    learner = cell if own_data is None else replace(cell, data=own_data)
    student, name = first(p.student(learner) for p in parts) or (build_student(learner),
                                                                 cfg.student.name)
    student_probe = probe(student, learner.data)
    teacher_probe, teacher_name = None, None
    if with_teacher:
        teacher_probe, teacher_name = first(p.teacher_probe(cell) for p in parts) or (
            probe_architecture(cfg.teacher, "teacher", cell.data), cfg.teacher.name)
    losses = assemble_losses(learner, cfg.loss, student, name, teacher_probe, teacher_name)
    for part in parts:
        losses = part.losses(learner, losses, student_probe, teacher_probe)

    # everything is checked: from here on teachers (and a partition-trained start) may train
    result: dict[str, Any] = {cell.task.teacher_key(cell.task.selection.metric): None,
                              "teacher_source": None}
    teaching = None
    if with_teacher:
        live = any(p.live_teacher for p in parts)
        teaching = first(p.teacher(cell) for p in parts) or offline_teacher(cell, live)
        if teaching.model is not None:
            for loss in losses.values():
                loss.bind_teacher(teaching.model)
        result.update(teaching.result)
    start = student_start(cell, student)
    if start is not None:
        result["student_start"] = start
        if all(p.distil_on_student_part for p in parts):
            # Alballa & Canini 2024: a pre-trained student distils on its own part
            learner = replace(learner, data=partition_bundle(learner.data, cfg.data, cfg.seed,
                                                             cfg.student.partition))
    objective = first(p.objective(learner, student, losses, teaching) for p in parts) or (
        cell.task.objective(learner, student, losses, teaching, ce_weight(cfg.loss)))
    tracker = first(p.tracker(learner, objective) for p in parts)
    fitted = learner if tracker is None else replace(learner, tracker=tracker)
    summary = first(p.train(fitted, objective) for p in parts) or train(fitted, objective)
    result.update(summary.as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    result.update(cell.task.result_extras(learner.data, result))
    for part in parts:
        result.update(part.result(learner, objective, result))
    return result


def student_start(cell: Cell, student: torch.nn.Module) -> dict[str, Any] | None:
    """student.partition=i: load the architecture trained on part i into `student` (Alballa &
    Canini 2024); result.json's `student_start`, or None when student.partition is null."""
    cfg = cell.cfg
    _, record = start_from_partition(cfg.student, cfg.teacher, cfg.data, cell.data, cfg.seed,
                                     cell.cache_dir, cell.device, progress=cfg.trainer.progress,
                                     task=cell.task)
    if record is None:
        return None
    load_weights(student, record.path, key="student.partition")
    return {"partition": cfg.student.partition, "source": record.source, "key": record.key}


def offline_teacher(cell: Cell, live: bool = False) -> Teaching:
    """scheme=offline's teacher: teacher.checkpoint, else the cache, else trained once now.

    The task decides how its outputs reach the step: stored outputs where its output cache
    is exact (kdrun/cache/outputs.py for images, kdrun/cache/token_outputs.py for LMs),
    unless `live`: a plug-in whose terms read the teacher's features runs it live.
    """
    cfg = cell.cfg
    record = obtain_teacher(cfg.teacher, cfg.data, cell.data, cfg.seed, cell.cache_dir,
                            cell.device, progress=cfg.trainer.progress, task=cell.task)
    record.model.to(cell.device)
    teacher = cell.task.serve_teacher(FrozenTeacher(record.model, cfg.teacher.name), record, cell,
                                      live)
    return Teaching(teacher, record.model, {
        "teacher": cfg.teacher.name, "teacher_source": record.source, "teacher_key": record.key,
        "teacher_path": str(record.path), "teacher_cache": teacher.cached,
        **cell.task.score_teacher(record.model, cell.data.test, cell.device)})
