"""One cell, start to finish: validate -> data -> algorithm -> result.json.

A completed cell is skipped when run again; an unfinished one resumes from its
last.pt; a failed one runs again. Whatever happens, result.json says so and
the W&B run is finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.config.validate import unused_overrides, validate_config
from kdrun.data.partition_view import write_partitions
from kdrun.engine import distributed
from kdrun.engine.device import pick_device, set_threads
from kdrun.losses import needs_teacher
from kdrun.models.build import check_model_config
from kdrun.tracking.result import read_result, write_result
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """What an algorithm needs to run: the config, where to write, data and device."""

    cfg: DictConfig
    dir: Path
    data: Any
    device: torch.device
    tracker: Tracker
    cache_dir: Path


def identity(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The result.json keys that say which cell this is (DESIGN.md).

    `teacher` is the configured teacher even when no loss needs it (loss=ce), so a
    baseline cell sits in its pair's row of a table; teacher_source stays null then.
    """
    teacher = None if OmegaConf.is_missing(cfg.teacher, "name") else cfg.teacher.name
    return {"teacher": teacher,
            "student": None if OmegaConf.is_missing(cfg.student, "name") else cfg.student.name,
            "loss": list(cfg.loss.keys()), "scheme": cfg.scheme.name,
            "algorithm": cfg.algorithm.name, "data": cfg.data.name, "seed": cfg.seed,
            "overrides": list(overrides)}


def _build_data(cfg: DictConfig):
    from kdrun.data import build_data

    try:
        return build_data(cfg.data, cfg.seed)
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
    result: dict[str, Any] = {"status": "running", **identity(cfg, overrides),
                              "student_top1": None, "best_student_top1": None, "val_top1": None,
                              "teacher_top1": None, "teacher_source": None, "epochs_done": 0,
                              **(extra or {})}
    tracker: Tracker | None = None
    exit_code = 1
    try:
        validate_config(cfg)
        for warning in unused_overrides(cfg, overrides):
            log.warning(warning)
        set_threads(cfg.trainer.threads)
        device = pick_device(cfg.trainer.device)
        data = _build_data(cfg)
        if distributed.is_main():
            write_partitions(cell_dir, cfg.data, data, cfg.seed)  # partitions.json, when partitioned
        check_model_config(cfg.student, "student", data.num_classes)
        if needs_teacher(cfg.loss):
            check_model_config(cfg.teacher, "teacher", data.num_classes)
        cache_dir = Path(cfg.paths.cache_dir)
        main = distributed.is_main()  # under torchrun only rank 0 writes
        if main:
            write_result(cell_dir, result)
        tracker = Tracker(cell_dir, cfg.logger if main else None, cache_dir, name=cell_dir.name,
                          config=OmegaConf.to_container(cfg, resolve=True), group=group)
        from kdrun.algorithms.registry import runner_for

        runner = runner_for(cfg.scheme.name, cfg.algorithm.name)
        result.update(runner(Cell(cfg, cell_dir, data, device, tracker, cache_dir)))
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
