"""The training loop: step -> named terms -> eval each epoch -> checkpoints.

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
from kdrun.engine.checkpoint import load_checkpoint, save_atomic
from kdrun.engine.config import OptimConfig, SchedConfig
from kdrun.engine.evaluate import top1
from kdrun.engine.optim import build_optimizer, build_scheduler
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    epochs_done: int
    student_top1: float | None       # test top-1 at the last epoch
    best_student_top1: float | None  # test top-1 at the best-validation epoch
    val_top1: float | None           # best validation top-1
    best_epoch: int | None
    wall_s: float
    resumed_from: int                # epoch the run continued from (0 = fresh)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fit(objective: nn.Module, data, *, epochs: int, optim: OptimConfig, sched: SchedConfig,
        ckpt_dir: Path, tracker: Tracker, device: torch.device, grad_clip: float | None = None,
        progress: bool = True, desc: str = "student", optim_key: str = "optim",
        sched_key: str = "sched", amp: str = "off", channels_last: bool = False,
        lr_scale: float = 1.0, data_parallel: bool = True) -> FitResult:
    """Train `objective` (batch -> (terms, logits)); evaluate and keep `objective.student`.

    The optimizer takes `objective.trainable_parameters()` when the objective has
    it (a pre-training stage trains only part of the model), else all parameters.
    amp: off | bf16 | fp16 autocast (fp16 with a gradient scaler); channels_last:
    NHWC memory format; lr_scale multiplies the configured learning rate. Under
    torchrun (and data_parallel) the objective is wrapped in DDP.
    """
    ckpt_dir = Path(ckpt_dir)
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
    step = StepSettings(step_model, amp, scaler, channels_last, grad_clip)
    best = {"val_top1": None, "best_student_top1": None, "best_epoch": None}
    last = {"student_top1": None}
    start, wall = 0, 0.0
    state = _resume_state(ckpt_dir)
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
                              progress and writes, desc, dp)
        record["lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
        predictor = objective.predictor() if hasattr(objective, "predictor") else objective.student
        record["val_top1"] = top1(predictor, data.val, device, across_ranks=dp)
        record["test_top1"] = top1(predictor, data.test, device, across_ranks=dp)
        record["epoch_s"] = time.perf_counter() - t0
        wall += record["epoch_s"]
        last = {"student_top1": record["test_top1"]}
        if best["val_top1"] is None or record["val_top1"] > best["val_top1"]:
            best = {"val_top1": record["val_top1"], "best_student_top1": record["test_top1"],
                    "best_epoch": epoch + 1}
            if writes:
                save_atomic({"model": objective.student.state_dict(), "epoch": epoch + 1,
                             "val_top1": record["val_top1"]}, ckpt_dir / "best.pt")
        if writes:
            tracker.log_epoch(record)
            save_atomic({"model": objective.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "rng": torch.get_rng_state(), "epoch": epoch + 1, "wall_s": wall,
                         "best": best, "last": last}, ckpt_dir / "last.pt")
        if dp:
            distributed.barrier()
        log.info("%s epoch %d/%d: loss %.4f train %.2f%% val %.2f%% test %.2f%% (%.1fs)", desc,
                 epoch + 1, epochs, record["loss"], record["train_top1"], record["val_top1"],
                 record["test_top1"], record["epoch_s"])

    return FitResult(epochs_done=epochs, student_top1=last["student_top1"],
                     best_student_top1=best["best_student_top1"], val_top1=best["val_top1"],
                     best_epoch=best["best_epoch"], wall_s=wall, resumed_from=start)


def _resume_state(ckpt_dir: Path) -> dict[str, Any] | None:
    """last.pt to resume from, or None to start over: there is none, it is corrupt (set
    aside), or the best.pt it counts on is lost (callers read best.pt after fit)."""
    state = load_checkpoint(ckpt_dir / "last.pt")
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
                 desc, data_parallel) -> dict[str, Any]:
    objective.train()
    data.train.set_epoch(epoch)
    if hasattr(objective, "set_epoch"):
        objective.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    correct = torch.zeros((), device=device)
    seen = 0
    bar = tqdm(data.train, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress,
               leave=False, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        batch = batch.to(device)
        terms, logits = step.forward(batch, device)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        if step.grad_clip:
            step.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(objective.parameters(), step.grad_clip)
        step.scaler.step(optimizer)
        step.scaler.update()
        n = batch.y.numel()
        seen += n
        with torch.no_grad():
            for key, value in terms.items():
                sums[key] += value.detach() * n
            sums["loss"] += loss.detach() * n
            correct += (logits.argmax(1) == batch.y).sum()
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{sums['loss'].item() / seen:.3f}",
                            acc=f"{100 * correct.item() / seen:.1f}", refresh=False)
    if seen == 0:
        raise RuntimeError("the training split gave no batch; lower data.batch_size or raise data.max_train")
    keys = sorted(sums)  # every rank has the same terms: sum them, with counts, across ranks
    stacked = torch.stack(
        [sums[k].float() for k in keys] + [correct.float(), torch.tensor(float(seen), device=device)])
    totals = distributed.sum_across_ranks(stacked) if data_parallel else stacked
    seen_all = totals[-1].item()
    values = {k: totals[j].item() / seen_all for j, k in enumerate(keys)}
    record = {"epoch": epoch + 1, "loss": values.pop("loss")}
    record.update({f"loss/{k}": v for k, v in values.items()})
    record["train_top1"] = 100.0 * totals[-2].item() / seen_all
    return record
