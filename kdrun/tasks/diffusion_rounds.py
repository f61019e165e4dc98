"""The rounds of a task=diffusion cell: scorer -> teacher -> rounds that halve the steps.

Every part resumes: the scorer and the teacher live in the teacher cache (trained once,
under a lock); round k fits in rounds/round<k>/checkpoints (last.pt resumes mid-round)
and, when done, leaves rounds/round<k>/round.json, so a rerun skips it and loads its
best.pt. metrics.jsonl gets one line per finished round ("epoch" = round; "loss" = its last epoch's
mean training loss), written before round.json: a kill between the two rewrites the same line.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from kdrun.cache.teachers import obtain_teacher
from kdrun.losses import build_losses
from kdrun.models.weights import read_state_dict
from kdrun.tasks.diffusion_scoring import Sampler, obtain_scorer, save_grid, scored_bundle
from kdrun.tracking.result import write_json_atomic
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)


def run_rounds(cell: Any) -> dict[str, Any]:
    from kdrun.engine.assemble import runtime_options  # the engine imports kdrun.tasks
    from kdrun.engine.loop import fit
    from kdrun.tasks.diffusion import DiffusionObjective

    cfg, task_cfg = cell.cfg, cell.cfg.task
    progress = cfg.trainer.progress
    scorer, scorer_info = obtain_scorer(task_cfg, cfg.data, cell.cache_dir, cell.device, progress)
    data = scored_bundle(cell.data, scorer, task_cfg.fd_samples)
    record = obtain_teacher(cfg.teacher, selection_identity(cfg), data, cfg.seed, cell.cache_dir,
                            teacher_trainer(cell))
    teacher = record.model.to(cell.device)
    result: dict[str, Any] = {
        "teacher": cfg.teacher.name, "teacher_source": record.source, "teacher_key": record.key,
        "teacher_path": str(record.path), "teacher_steps": task_cfg.teacher_steps,
        "fd_scorer": scorer_info, "student_params": sum(p.numel() for p in teacher.parameters())}
    result.update(cell.task.score_teacher(Sampler(teacher, task_cfg.teacher_steps), data.test,
                                          cell.device))
    grid_noise = data.test.noise(task_cfg.grid_samples)
    save_grid(Sampler(teacher, task_cfg.teacher_steps).generate(grid_noise, cell.device),
              cell.dir / "samples_teacher.png")

    loss_name = next(iter(cfg.loss))
    rounds_dir = cell.dir / "rounds"
    done = finished_rounds(rounds_dir, task_cfg.rounds)
    cell.tracker.resume_at(len(done))
    model, rounds, resumed_from, wall = teacher, [], 0, 0.0
    for k in range(1, task_cfg.rounds + 1):
        steps = task_cfg.teacher_steps // 2 ** k
        folder = rounds_dir / f"round{k}"
        student = build_student(cell, model)
        if k <= len(done):
            student.load_state_dict(read_state_dict(folder / "checkpoints" / "best.pt"))
            rounds.append(done[k - 1])
            resumed_from += cfg.trainer.epochs
            wall += done[k - 1]["wall_s"]
            model = student
            continue
        torch.manual_seed(cfg.seed * 1000 + k)  # a fresh round draws alike however it was reached
        losses = build_losses(cfg.loss, None, None)
        objective = DiffusionObjective(student, losses[loss_name],
                                       teacher=model if loss_name == "progressive" else None,
                                       steps=steps, epochs=cfg.trainer.epochs,
                                       eval_every=task_cfg.eval_every)
        round_tracker = cell.tracker.stage(f"round{k}")
        summary = fit(objective, data, epochs=cfg.trainer.epochs, optim=cfg.optim, sched=cfg.sched,
                      ckpt_dir=folder / "checkpoints", tracker=round_tracker,
                      desc=f"round {k} ({steps} steps)", **runtime_options(cell))
        student.load_state_dict(read_state_dict(folder / "checkpoints" / "best.pt"))
        model = student
        entry = {"round": k, "steps": steps, **summary.metrics, "best_epoch": summary.best_epoch,
                 "wall_s": summary.wall_s, "loss": round_tracker.metrics.read()[-1]["loss"],
                 **round_samples(cell, model, teacher, steps, data, grid_noise, k)}
        cell.tracker.log_epoch({"epoch": k, "steps": steps, "loss": entry["loss"],
                                "val_fd": entry["val_fd"],
                                "test_fd": entry["best_student_fd"],
                                "undistilled_fd": entry["undistilled_fd"],
                                "sample_s": entry["sample_s"]})
        log_image(cell.tracker, f"samples/round{k}", cell.dir / f"samples_round{k}.png")
        write_json_atomic(folder / "round.json", entry)
        rounds.append(entry)
        resumed_from += summary.resumed_from
        wall += summary.wall_s
    last = rounds[-1]
    result.update({key: last[key] for key in cell.task.result_keys if key in last})
    result.update(steps=last["steps"], sample_s=last["sample_s"],
                  undistilled_fd=last["undistilled_fd"], best_epoch=last["best_epoch"],
                  epochs_done=task_cfg.rounds * cfg.trainer.epochs, resumed_from=resumed_from,
                  wall_s=wall, rounds=rounds, samples=str(cell.dir / f"samples_round{last['round']}.png"))
    return result


def build_student(cell: Any, previous: torch.nn.Module) -> torch.nn.Module:
    """student's config (the teacher's architecture; its own dropout) with `previous`' weights."""
    from kdrun.models.build import build_model

    with torch.random.fork_rng(devices=[]):
        student = build_model(cell.cfg.student, "student", cell.data.num_classes, cell.data.in_chans)
    student.load_state_dict(previous.state_dict())
    return student.to(cell.device)


def finished_rounds(rounds_dir: Path, rounds: int) -> list[dict[str, Any]]:
    """round.json of rounds 1, 2, ... up to the first that has none."""
    done = []
    for k in range(1, rounds + 1):
        path = rounds_dir / f"round{k}" / "round.json"
        if not path.is_file():
            break
        done.append(json.loads(path.read_text()))
    return done


def round_samples(cell: Any, model: torch.nn.Module, teacher: torch.nn.Module, steps: int, data: Any,
                  grid_noise: torch.Tensor, k: int) -> dict[str, Any]:
    """The round's sampling time, its grid PNG, and the undistilled teacher at the same steps
    (the paper's DDIM baseline)."""
    sampler = Sampler(model, steps)
    noise = data.test.noise()
    start = time.perf_counter()
    sampler.generate(noise, cell.device)
    sample_s = time.perf_counter() - start
    save_grid(sampler.generate(grid_noise, cell.device), cell.dir / f"samples_round{k}.png")
    undistilled = data.test.fd(Sampler(teacher, steps).generate(noise, cell.device))
    return {"sample_s": sample_s, "undistilled_fd": undistilled}


def selection_identity(cfg: Any) -> Any:
    """The data config plus how the teacher's best epoch is chosen (FD at task.teacher_steps
    on task.fd_samples images, by task.scorer): part of the teacher's cache key."""
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    data.fd_selection = {k: cfg.task[k] for k in ("teacher_steps", "fd_samples", "scorer",
                                                 "scorer_epochs")}
    if cfg.task.eval_every != 1:  # absent at the default: keys stay as before the option
        data.fd_selection.eval_every = cfg.task.eval_every
    return data


def teacher_trainer(cell: Any):
    """Fit the teacher by the denoising objective, evaluated at task.teacher_steps."""
    cfg = cell.cfg

    def train(model: torch.nn.Module, teacher_cfg: Any, data: Any, ckpt_dir: Path) -> None:
        from kdrun.engine.loop import fit

        objective = cell.task.supervised(model)
        objective.steps, objective.eval_every = cfg.task.teacher_steps, cfg.task.eval_every
        objective.epochs = teacher_cfg.train.epochs
        fit(objective, data, epochs=teacher_cfg.train.epochs, optim=teacher_cfg.train.optim,
            sched=teacher_cfg.train.sched, ckpt_dir=ckpt_dir, tracker=Tracker(ckpt_dir.parent),
            device=cell.device, progress=cfg.trainer.progress, desc="teacher",
            optim_key="teacher.train.optim", sched_key="teacher.train.sched",
            data_parallel=False, task=cell.task)
    return train


def log_image(tracker: Tracker, key: str, path: Path) -> None:
    if tracker.wandb is not None:
        import wandb

        tracker.wandb.log({key: wandb.Image(str(path))})
