"""lifelong: a sequence of class-incremental tasks; the previous model teaches the next.

Learning without Forgetting, Li & Hoiem, "Learning without Forgetting" (ECCV 2016,
TPAMI 2017): before training on a new task, a frozen copy of the current model is
kept; while the model learns the new task's classes from the new task's samples only,
the copy's responses on those same inputs, on every old task's head, are distilled
into it (T = 2, lambda_o = 1), so old tasks are not forgotten although their data is
gone. `algorithm.method=finetune` drops the transfer: the baseline in one switch.

Tasks split the data's classes in order (`algorithm.tasks=5` on digits: {0,1}, {2,3},
...). Each task trains with the engine's loop into checkpoints/task<k>/ (resumable);
after each task the model is scored on the test samples of every task seen so far.
`scenario=task` (LwF's multi-head setting): each task has its own head (its classes'
columns of the classifier) and is scored on it; `scenario=class`: one head over every
class seen so far. Other methods in `loss=` (not kd, whose role LwF's head-wise term
takes; not ce) add their terms with the previous model as teacher; methods with a
pre-training stage are not supported. The `teacher` group is not used.

    kdrun algorithm=lifelong                              # LwF on split digits (5 x 2 classes)
    kdrun algorithm=lifelong algorithm.method=finetune    # the baseline
    kdrun algorithm=lifelong data=fashion_mnist algorithm.batch_size=null

A task holds 1/tasks of the data: at batch 64 a split-digits task gets 4 steps per
epoch, too few to learn it (measured: LwF 58% average, near chance on 2-way heads);
algorithm.batch_size=16 gives 16 steps (LwF 95%).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import nn

from kdrun.config.bounds import bounded
from kdrun.algorithms.lifelong_tasks import (LwFObjective, head_accuracy, split_classes,
                                             task_data)
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.engine.assemble import assemble_losses, build_student, probe, train
from kdrun.models.frozen import FrozenTeacher
from kdrun.losses.response.kd import KDConfig


@dataclass
class LifelongConfig:
    """LwF's settings; defaults from Li & Hoiem (T = 2, lambda_o = 1)."""

    name: str = "lifelong"
    method: str = "lwf"               # lwf | finetune (no transfer from the previous model)
    # the classes, in order, cut into this many tasks
    tasks: int = bounded(5, ge=2, why="checked against the class count too")
    scenario: str = "task"            # task: a head per task (LwF) | class: one head, seen classes
    temperature: float = bounded(2.0, gt=0)  # T of the old-head distillation
    lwf_weight: float = bounded(1.0, ge=0)  # lambda_o, weight of the old-head distillation
    # null: trainer.epochs
    epochs_per_task: Optional[int] = bounded(None, ge=1, why="or null for trainer.epochs")
    # a task's training batch (small tasks need steps); null: data's
    batch_size: Optional[int] = bounded(16, ge=1, why="or null for data.batch_size")


def validate(cfg, loss_cfg, num_classes: int) -> None:
    if cfg.method not in ("lwf", "finetune"):
        raise ConfigError(f"algorithm.method={cfg.method}: use lwf or finetune")
    if cfg.scenario not in ("task", "class"):
        raise ConfigError(f"algorithm.scenario={cfg.scenario}: use task or class")
    if not 2 <= cfg.tasks <= num_classes:
        raise ConfigError(f"algorithm.tasks={cfg.tasks} must be within [2, {num_classes}] "
                          f"(the data has {num_classes} classes)")
    if "kd" in loss_cfg:
        default = KDConfig()
        for key in ("temperature", "alpha", "divergence"):
            if loss_cfg.kd[key] != getattr(default, key):
                raise ConfigError(f"loss.kd.{key}={loss_cfg.kd[key]} is not used by algorithm="
                                  "lifelong: LwF distils the old heads itself; set algorithm."
                                  "temperature / algorithm.lwf_weight instead")


def transfer_losses(cell, loss_cfg, student: nn.Module, teacher: nn.Module) -> nn.ModuleDict:
    """The other selected methods, the previous model (same architecture) as their teacher."""
    if not loss_cfg:
        return nn.ModuleDict()
    name = cell.cfg.student.name
    losses = assemble_losses(cell, loss_cfg, student, name, probe(teacher, cell.data), name)
    for key, loss in losses.items():
        if loss.pretrain_epochs > 0:
            raise ConfigError(f"loss={key} has a pre-training stage, which algorithm=lifelong "
                              "does not run; pick methods without one")
        loss.bind_teacher(teacher)
    return losses


def forgetting(rows: list[dict]) -> float | None:
    """Mean over old tasks of (best accuracy before the last task - final accuracy)."""
    final = rows[-1]["top1"]
    drops = [max(row["top1"][j] for row in rows[j:-1]) - final[j] for j in range(len(final) - 1)]
    return sum(drops) / len(drops) if drops else None


@register_algorithm
class Lifelong(Plugin):
    """One student learns a sequence of tasks: the tasks are the whole learning (`learn`)."""

    name = "lifelong"
    config = LifelongConfig

    def learn(self, cell) -> dict:
        return learn_tasks(cell)


def learn_tasks(cell) -> dict:
    cfg, lcfg = cell.cfg, cell.cfg.algorithm
    validate(lcfg, cfg.loss, cell.data.num_classes)
    splits = split_classes(cell.data.num_classes, lcfg.tasks)
    tasks = [task_data(cell.data, classes, lcfg.batch_size) for classes in splits]
    extra = {k: v for k, v in cfg.loss.items() if k not in ("kd", "ce")}
    student = build_student(cell)
    if lcfg.method == "lwf" and extra:  # fail before any training
        with torch.random.fork_rng(devices=[]):
            transfer_losses(replace(cell, data=tasks[0]), extra, copy.deepcopy(student), student)
    epochs = lcfg.epochs_per_task or cfg.trainer.epochs
    per_task = lcfg.scenario == "task"
    cell.tracker.resume_at(0)  # one summary line per task, recomputed on resume
    rows, walls = [], []
    for t, classes in enumerate(splits):
        seen = [c for group in splits[:t + 1] for c in group]
        old = splits[:t] if per_task else ([seen[:-len(classes)]] if t else [])
        task_cell = replace(cell, data=tasks[t])
        previous, losses = None, None
        if t > 0 and lcfg.method == "lwf":
            previous = FrozenTeacher(copy.deepcopy(student), f"task{t}")
            losses = transfer_losses(task_cell, extra, student, previous.model)
        objective = LwFObjective(student, classes if per_task else seen, old, previous,
                                 lcfg.temperature, lcfg.lwf_weight, losses)
        fitted = train(task_cell, objective, ckpt_dir=cell.dir / "checkpoints" / f"task{t + 1}",
                       tracker=cell.tracker.stage(f"task{t + 1}"), epochs=epochs,
                       desc=f"task{t + 1}")
        walls.append(fitted.wall_s)
        heads = [splits[j] if per_task else seen for j in range(t + 1)]
        accs = [head_accuracy(student, heads[j], tasks[j].test, cell.device) for j in range(t + 1)]
        rows.append({"task": t + 1, "classes": classes, "top1": accs,
                     "average_top1": sum(accs) / len(accs)})
        cell.tracker.log_epoch({"epoch": t + 1, "average_top1": rows[-1]["average_top1"],
                                **{f"task_top1/{j + 1}": a for j, a in enumerate(accs)}})

    def seen_top1(split: str) -> float:  # every seen sample, each scored on its task's head
        sizes = [getattr(task, split).num_samples for task in tasks]
        accs = [head_accuracy(student, heads[j], getattr(tasks[j], split), cell.device)
                for j in range(len(tasks))]
        return sum(a * n for a, n in zip(accs, sizes)) / sum(sizes)

    final = seen_top1("test")
    return {"teacher": None, "teacher_top1": None, "teacher_source": None,
            "student_top1": final,
            "best_student_top1": final,  # the model after the last task; no epoch is selected
            "val_top1": seen_top1("val"), "epochs_done": epochs * len(splits),
            "wall_s": sum(walls), "tasks": rows, "average_top1": rows[-1]["average_top1"],
            "forgetting": forgetting(rows),
            "student_params": sum(p.numel() for p in student.parameters())}
