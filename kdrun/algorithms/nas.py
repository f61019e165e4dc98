"""nas: search the student's architecture for accuracy under a size or latency budget.

Each trial is one KD cell (offline, the selected loss terms) whose student comes from
the search space of nas_space.py (`algorithm.family/depth/width`; family=null keeps the
`student=` model, so `student=` itself can be searched too). Before training, the cell
counts the student's parameters and measures its latency (median ms per batch of
`latency_batch` inputs on this machine's device, after warm-up), and checks them against
`algorithm.max_params` / `algorithm.max_latency_ms`. A student within budget is distilled
and scored by its best validation top-1. A student over budget is not trained: it is
recorded (`budget.within: false`) and scored -100 * (largest relative excess), e.g. -50 for
1.5x the budget, below every feasible trial and better the closer it is to the budget.
The score is result.json's `objective`, what the kdrun CLI returns to the optuna sweeper.

Driven by Hydra's optuna sweeper through conf/hparams_search/nas.yaml, which also runs
the Pareto front callback (nas_front.py) at the end of the sweep. Architecture search
for a student under a latency target, distilled by a fixed teacher, follows Liu et al.,
"Search to Distill: Pearls are Everywhere but not the Eyes" (CVPR 2020); the latency
budget as a constraint on the reward follows Tan et al., "MnasNet" (CVPR 2019).

    kdrun -m hparams_search=nas hydra.sweeper.n_trials=20
    kdrun algorithm=nas algorithm.family=resnet_cifar algorithm.depth=2 algorithm.width=0.5
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from kdrun.config.bounds import bounded
from kdrun.algorithms.nas_space import architecture_name, build_architecture, check_architecture
from kdrun.engine.assemble import build_student
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.tracking.result import write_json_atomic

MEASURE_FILE = "nas_measure.json"  # kept in the cell, so a resumed cell keeps its decision


@dataclass
class NASConfig:
    """One trial of the architecture search; budgets are off (null) unless set."""

    name: str = "nas"
    family: Optional[str] = None      # resnet_cifar | shufflenetv2 | timm_resnet; null: student=
    depth: int = bounded(1, ge=1, why="blocks per stage")  # blocks per stage
    width: float = bounded(1.0, gt=0, why="a channel multiplier")  # channel multiplier
    # budget on the student's parameter count
    max_params: Optional[int] = bounded(None, gt=0, why="or null")
    # budget on ms per batch on this machine
    max_latency_ms: Optional[float] = bounded(None, gt=0, why="or null")
    # inputs per timed batch; null: data.batch_size
    latency_batch: Optional[int] = bounded(None, gt=0, why="or null")
    latency_repeats: int = bounded(10, ge=1)  # timed forwards; the median is kept


def validate(cfg) -> None:
    if cfg.family is not None:
        check_architecture(cfg.family, cfg.depth, cfg.width)


@torch.no_grad()
def latency_ms(model: nn.Module, data, batch: int, repeats: int, device: torch.device) -> float:
    """Median wall time (ms) of one eval-mode forward of `batch` inputs, after 2 warm-ups."""
    was_training, home = model.training, next(model.parameters()).device
    model.eval().to(device)
    x = torch.zeros(batch, data.in_chans, data.image_size, data.image_size, device=device)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(1000.0 * (time.perf_counter() - start))
    model.train(was_training).to(home)
    return statistics.median(times)


def check_budget(params: int, latency: float, cfg) -> dict:
    """Which budgets hold, and the score of a student over budget (see the module docstring)."""
    ratios = []
    if cfg.max_params is not None:
        ratios.append(params / cfg.max_params)
    if cfg.max_latency_ms is not None:
        ratios.append(latency / cfg.max_latency_ms)
    excess = max([r - 1.0 for r in ratios], default=0.0)
    return {"max_params": cfg.max_params, "max_latency_ms": cfg.max_latency_ms,
            "within": excess <= 0, "excess": max(excess, 0.0),
            "penalty": -100.0 * excess if excess > 0 else 0.0}


@register_algorithm
class NAS(Plugin):
    """One optuna trial: a student architecture from the search space (`student`), measured
    against the budget first; a trial over budget trains nothing (`learn` ends it early)."""

    name = "nas"
    config = NASConfig

    def check(self, cell) -> None:
        validate(cell.cfg.algorithm)

    def learn(self, cell) -> dict | None:
        cfg, data, ncfg = cell.cfg, cell.data, cell.cfg.algorithm
        if ncfg.family is None:
            student, name = build_student(cell), cfg.student.name
            arch = {"family": None, "model": name}
        else:
            torch.manual_seed(cfg.seed)
            student = build_architecture(ncfg.family, ncfg.depth, ncfg.width, data.num_classes,
                                         data.in_chans)
            name = architecture_name(ncfg.family, ncfg.depth, ncfg.width)
            arch = {"family": ncfg.family, "depth": ncfg.depth, "width": ncfg.width}
        params = sum(p.numel() for p in student.parameters())
        measure_file = cell.dir / MEASURE_FILE
        if measure_file.is_file():
            measured = json.loads(measure_file.read_text())
        else:
            batch = ncfg.latency_batch or cfg.data.batch_size
            ms = latency_ms(student, data, batch, ncfg.latency_repeats, cell.device)
            measured = {"latency_ms": ms, "latency_batch": batch, "device": str(cell.device)}
            write_json_atomic(measure_file, measured)
        budget = check_budget(params, measured["latency_ms"], ncfg)
        self.found = (student, name)
        self.keys = {"student": name, "student_arch": arch, "student_params": params, **measured,
                     "budget": budget}
        if not budget["within"]:
            return {**self.keys, "teacher": None, "objective": budget["penalty"]}
        return None  # within budget: the builder distils this student

    def student(self, cell):
        return self.found

    def result(self, cell, objective, result) -> dict:
        return {**self.keys, "objective": result["val_top1"]}
