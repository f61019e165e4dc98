"""The training loop: step -> named terms -> eval each epoch -> checkpoints.

What is scored comes from the cell's task (kdrun.tasks; classification by default):
each epoch logs train_<metric> and val_/test_<metric> of the task's metrics, the best
epoch is the one with the best val_<selection metric> (earliest on ties), and
FitResult carries the task's result keys (student_top1, best_student_top1, val_top1).

Resume is exact on CPU: last.pt holds the objective, optimizer, scheduler,
torch RNG, epoch, best-so-far and elapsed time, and every epoch's data order
and augmentation depend only on (seed, epoch). metrics.jsonl lines written
after the checkpoint a resume starts from are dropped.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from kdrun.engine import distributed
from kdrun.engine.config import OptimConfig, SchedConfig
from kdrun.engine.evaluate import evaluate_splits
from kdrun.engine.optim import build_optimizer, build_scheduler
from kdrun.tasks import Task, task_for
from kdrun.tracking.checkpoint import load_checkpoint, save_atomic
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What fit() reports. `metrics` holds the task's result keys, per metric m:
    student_<m> (test, last epoch), best_student_<m> (test at the best-validation
    epoch), val_<m> (validation at that epoch); each also reads as an attribute
    (classification: `summary.student_top1`, `summary.best_student_top1`, `summary.val_top1`)."""

    epochs_done: int
    metrics: dict[str, float | None]
    best_epoch: int | None
    wall_s: float
    resumed_from: int                # epoch the run continued from (0 = fresh)

    def __getattr__(self, name: str) -> Any:
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def as_dict(self) -> dict[str, Any]:
        """The result.json keys, in the order they have always had."""
        return {"epochs_done": self.epochs_done, **self.metrics, "best_epoch": self.best_epoch,
                "wall_s": self.wall_s, "resumed_from": self.resumed_from}


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fit(objective: nn.Module, data, *, epochs: int, optim: OptimConfig, sched: SchedConfig,
        ckpt_dir: Path, tracker: Tracker, device: torch.device, grad_clip: float | None = None,
        progress: bool = True, desc: str = "student", optim_key: str = "optim",
        sched_key: str = "sched", amp: str = "off", channels_last: bool = False,
        lr_scale: float = 1.0, data_parallel: bool = True, task: Task | None = None,
        accumulate: int = 1) -> FitResult:
    """Train `objective` (batch -> (terms, logits)); evaluate and keep `objective.student`.

    task: what is scored and how the best epoch is chosen (default: classification).

    The optimizer takes `objective.trainable_parameters()` when the objective has
    it (a pre-training stage trains only part of the model), else all parameters.
    amp: off | bf16 | fp16 autocast (fp16 with a gradient scaler); channels_last:
    NHWC memory format; lr_scale multiplies the configured learning rate; accumulate: one
    optimizer step per that many batches (each batch's loss scaled by 1/accumulate). Under
    torchrun (and data_parallel) the objective is wrapped in DDP.
    """
    ckpt_dir = Path(ckpt_dir)
    task = task if task is not None else task_for()
    selection = task.selection
    objective.to(device)
    if channels_last:
        objective.to(memory_format=torch.channels_last)
    params = (objective.trainable_parameters() if hasattr(objective, "trainable_parameters")
              else objective.parameters())
    optimizer = build_optimizer(params, optim, optim_key, lr_scale=lr_scale)
    scheduler = build_scheduler(optimizer, epochs, sched, sched_key)
    if amp not in ("off", *AMP_DTYPES):
        from kdrun.config.errors import ConfigError

        raise ConfigError(f"trainer.amp={amp}: use off, bf16 or fp16")
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    step_model = objective
    dp = data_parallel and distributed.is_active()
    writes = not dp or distributed.is_main()  # under DDP only rank 0 writes files
    _shard(data, dp)
    if dp:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(objective, find_unused_parameters=True)
    step = StepSettings(step_model, amp, scaler, channels_last, grad_clip, accumulate)
    best, last = _fresh_best(task), _fresh_last(task)
    start, wall = 0, 0.0
    state = _resume_state(ckpt_dir, task)
    if state is not None:
        objective.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start, wall, best, last = state["epoch"], state["wall_s"], state["best"], state["last"]
        log.info("%s: resuming after epoch %d from %s", desc, start, ckpt_dir / "last.pt")
    if writes:
        tracker.resume_at(start)

    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        record = train_epoch(objective, step, data, optimizer, epoch, epochs, device,
                              progress and writes, desc, dp, task)
        record["lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
        predictor = objective.predictor() if hasattr(objective, "predictor") else objective.student
        record.update(evaluate_splits(task, predictor, {"val": data.val, "test": data.test},
                                      device, across_ranks=dp))
        if writes:
            record.update(task.epoch_extras(predictor, data, device, epoch))
        record["epoch_s"] = time.perf_counter() - t0
        wall += record["epoch_s"]
        last = {task.last_key(m): record[f"test_{m}"] for m in task.metrics}
        chosen = f"val_{selection.metric}"
        if selection.better(record[chosen], best[task.val_key(selection.metric)]):
            best = {**{task.val_key(m): record[f"val_{m}"] for m in task.metrics},
                    **{task.best_key(m): record[f"test_{m}"] for m in task.metrics},
                    "best_epoch": epoch + 1}
            if writes:
                save_atomic({"model": objective.student.state_dict(), "epoch": epoch + 1,
                             chosen: record[chosen]}, ckpt_dir / "best.pt")
        if writes:
            tracker.log_epoch(record)
            save_atomic({"model": objective.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "rng": torch.get_rng_state(), "epoch": epoch + 1, "wall_s": wall,
                         "best": best, "last": last}, ckpt_dir / "last.pt")
        if dp:
            distributed.barrier()
        shown, train = selection.metric, task.train_metric
        log.info("%s epoch %d/%d: loss %.4f train %s val %s test %s (%.1fs)", desc, epoch + 1,
                 epochs, record["loss"], task.format(train, record[f"train_{train}"]),
                 task.format(shown, record[f"val_{shown}"]),
                 task.format(shown, record[f"test_{shown}"]), record["epoch_s"])

    metrics = {key: last[key] if key in last else best[key]  # task.result_keys' order
               for m in task.metrics for key in (task.last_key(m), task.best_key(m), task.val_key(m))}
    return FitResult(epochs_done=epochs, metrics=metrics, best_epoch=best["best_epoch"],
                     wall_s=wall, resumed_from=start)


def _fresh_best(task: Task) -> dict[str, Any]:
    """last.pt's `best` before any epoch: val_<m> and best_student_<m> per metric, best_epoch
    (classification: the {"val_top1", "best_student_top1", "best_epoch"} it always held)."""
    return {**{task.val_key(m): None for m in task.metrics},
            **{task.best_key(m): None for m in task.metrics}, "best_epoch": None}


def _fresh_last(task: Task) -> dict[str, Any]:
    return {task.last_key(m): None for m in task.metrics}


def _resume_state(ckpt_dir: Path, task: Task) -> dict[str, Any] | None:
    """last.pt to resume from, or None to start over: there is none, it is corrupt (set
    aside), it scored another task's metrics, or the best.pt it counts on is lost
    (callers read best.pt after fit)."""
    state = load_checkpoint(ckpt_dir / "last.pt")
    if state is not None and (set(state.get("best", {})) != set(_fresh_best(task))
                              or set(state.get("last", {})) != set(_fresh_last(task))):
        log.warning("%s: last.pt holds other metrics than task %s scores (%s): starting over",
                    ckpt_dir, task.name, ", ".join(state.get("best", {})))
        return None
    if (state is not None and state["best"]["best_epoch"] is not None
            and load_checkpoint(ckpt_dir / "best.pt") is None):
        log.warning("%s: best.pt is missing or corrupt, so last.pt cannot be resumed: "
                    "starting over", ckpt_dir)
        return None
    return state


@dataclass
class StepSettings:
    """How one optimisation step runs: the (possibly DDP-wrapped) model, autocast, scaler."""

    model: nn.Module
    amp: str
    scaler: torch.amp.GradScaler
    channels_last: bool
    grad_clip: float | None
    accumulate: int = 1

    def forward(self, batch, device):
        if self.channels_last:
            batch = replace(batch, x=batch.x.contiguous(memory_format=torch.channels_last))
        with torch.autocast(device.type, dtype=AMP_DTYPES.get(self.amp, torch.bfloat16),
                            enabled=self.amp != "off"):
            return self.model(batch)


def _shard(data, data_parallel: bool) -> None:
    """Each rank reads its share of every split under DDP; the whole split otherwise."""
    rank, world = (distributed.rank(), distributed.world_size()) if data_parallel else (0, 1)
    for loader in (data.train, data.val, data.test):
        if not hasattr(loader, "shard"):
            if data_parallel:
                from kdrun.config.errors import ConfigError

                raise ConfigError(f"data={data.name}: data-parallel training (torchrun) needs an "
                                  "in-memory data set (digits, fashion_mnist, cifar10/100)")
            continue
        loader.shard(rank, world)


def train_epoch(objective, step, data, optimizer, epoch, epochs, device, progress,
                 desc, data_parallel, task: Task | None = None) -> dict[str, Any]:
    """One pass over data.train: the mean of every term, of the loss, and the task's
    train metric from the logits the objective returns (train_top1 for classification)."""
    task = task if task is not None else task_for()
    objective.train()
    data.train.set_epoch(epoch)
    if hasattr(objective, "set_epoch"):
        objective.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    scored: torch.Tensor | None = None  # the task's train_sums, added over the epoch
    seen = 0
    bar = tqdm(data.train, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress,
               leave=False, dynamic_ncols=True)
    steps = len(data.train) if step.accumulate > 1 else None  # the last batch always steps
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        batch = batch.to(device)
        terms, logits = step.forward(batch, device)
        loss = sum(terms.values())
        step.scaler.scale(loss / step.accumulate if step.accumulate > 1 else loss).backward()
        if (i + 1) % step.accumulate == 0 or i + 1 == steps:
            if step.grad_clip:
                step.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(objective.parameters(), step.grad_clip)
            step.scaler.step(optimizer)
            step.scaler.update()
            optimizer.zero_grad(set_to_none=True)
        n = task.count(batch)
        seen += n
        with torch.no_grad():
            for key, value in terms.items():
                sums[key] += value.detach() * n
            sums["loss"] += loss.detach() * n
            batch_scored = task.train_sums(logits, batch)
            if scored is None:
                scored = torch.zeros(batch_scored.shape, device=device)
            scored += batch_scored
        if progress and i % 10 == 0:
            train_value = task.train_value(scored.reshape(-1).tolist(), seen)
            bar.set_postfix({"loss": f"{sums['loss'].item() / seen:.3f}",
                             task.train_metric: f"{train_value:.1f}"}, refresh=False)
    if seen == 0:
        raise RuntimeError("the training split gave no batch; lower data.batch_size or raise data.max_train")
    keys = sorted(sums)  # every rank has the same terms: sum them, with counts, across ranks
    stacked = torch.cat([torch.stack([sums[k].float() for k in keys]), scored.float().reshape(-1),
                         torch.tensor([float(seen)], device=device)])
    totals = distributed.sum_across_ranks(stacked) if data_parallel else stacked
    seen_all = totals[-1].item()
    values = {k: totals[j].item() / seen_all for j, k in enumerate(keys)}
    record = {"epoch": epoch + 1, "loss": values.pop("loss")}
    record.update({f"loss/{k}": v for k, v in values.items()})
    record[f"train_{task.train_metric}"] = task.train_value(totals[len(keys):-1].tolist(), seen_all)
    return record
