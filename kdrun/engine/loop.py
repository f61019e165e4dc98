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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

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


def fit(objective: nn.Module, data, *, epochs: int, optim: OptimConfig, sched: SchedConfig,
        ckpt_dir: Path, tracker: Tracker, device: torch.device, grad_clip: float | None = None,
        progress: bool = True, desc: str = "student", optim_key: str = "optim",
        sched_key: str = "sched") -> FitResult:
    """Train `objective` (batch -> (terms, logits)); evaluate and keep `objective.student`.

    The optimizer takes `objective.trainable_parameters()` when the objective has
    it (a pre-training stage trains only part of the model), else all parameters.
    """
    ckpt_dir = Path(ckpt_dir)
    objective.to(device)
    params = (objective.trainable_parameters() if hasattr(objective, "trainable_parameters")
              else objective.parameters())
    optimizer = build_optimizer(params, optim, optim_key)
    scheduler = build_scheduler(optimizer, epochs, sched, sched_key)
    best = {"val_top1": None, "best_student_top1": None, "best_epoch": None}
    last = {"student_top1": None}
    start, wall = 0, 0.0
    state = load_checkpoint(ckpt_dir / "last.pt")
    if state is not None:
        objective.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, wall, best, last = state["epoch"], state["wall_s"], state["best"], state["last"]
        log.info("%s: resuming after epoch %d from %s", desc, start, ckpt_dir / "last.pt")
    tracker.resume_at(start)

    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        record = _train_epoch(objective, data, optimizer, epoch, epochs, device, grad_clip,
                              progress, desc)
        record["lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
        predictor = objective.predictor() if hasattr(objective, "predictor") else objective.student
        record["val_top1"] = top1(predictor, data.val, device)
        record["test_top1"] = top1(predictor, data.test, device)
        record["epoch_s"] = time.perf_counter() - t0
        wall += record["epoch_s"]
        last = {"student_top1": record["test_top1"]}
        if best["val_top1"] is None or record["val_top1"] > best["val_top1"]:
            best = {"val_top1": record["val_top1"], "best_student_top1": record["test_top1"],
                    "best_epoch": epoch + 1}
            save_atomic({"model": objective.student.state_dict(), "epoch": epoch + 1,
                         "val_top1": record["val_top1"]}, ckpt_dir / "best.pt")
        tracker.log_epoch(record)
        save_atomic({"model": objective.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                     "epoch": epoch + 1, "wall_s": wall, "best": best, "last": last},
                    ckpt_dir / "last.pt")
        log.info("%s epoch %d/%d: loss %.4f train %.2f%% val %.2f%% test %.2f%% (%.1fs)", desc,
                 epoch + 1, epochs, record["loss"], record["train_top1"], record["val_top1"],
                 record["test_top1"], record["epoch_s"])

    return FitResult(epochs_done=epochs, student_top1=last["student_top1"],
                     best_student_top1=best["best_student_top1"], val_top1=best["val_top1"],
                     best_epoch=best["best_epoch"], wall_s=wall, resumed_from=start)


def _train_epoch(objective, data, optimizer, epoch, epochs, device, grad_clip, progress,
                 desc) -> dict[str, Any]:
    objective.train()
    data.train.set_epoch(epoch)
    if hasattr(objective, "set_epoch"):
        objective.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    correct = torch.zeros((), device=device)
    seen = 0
    bar = tqdm(data.train, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress,
               leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        batch = batch.to(device)
        terms, logits = objective(batch)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(objective.parameters(), grad_clip)
        optimizer.step()
        n = batch.y.numel()
        seen += n
        with torch.no_grad():
            for key, value in terms.items():
                sums[key] += value.detach() * n
            sums["loss"] += loss.detach() * n
            correct += (logits.argmax(1) == batch.y).sum()
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{sums['loss'].item() / seen:.3f}",
                            acc=f"{100 * correct.item() / seen:.1f}", refresh=False)
    if seen == 0:
        raise RuntimeError("the training split gave no batch; lower data.batch_size or raise data.max_train")
    record = {"epoch": epoch + 1, "loss": sums.pop("loss").item() / seen}
    record.update({f"loss/{k}": v.item() / seen for k, v in sums.items()})
    record["train_top1"] = 100.0 * correct.item() / seen
    return record
