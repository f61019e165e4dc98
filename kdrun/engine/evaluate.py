"""Scoring a model on loaders (eval mode, no grad): top-1 accuracy, and a task's metrics
on named splits (what the loop logs each epoch as val_<metric>, test_<metric>)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from kdrun.engine import distributed

if TYPE_CHECKING:
    from kdrun.tasks.base import Task


@torch.no_grad()
def top1(model: nn.Module | Callable[[Tensor], object], loader: Iterable, device: torch.device,
         across_ranks: bool = False) -> float:
    """Percent of correct argmax predictions; `model` returns a ModelOutput.

    across_ranks: data-parallel evaluation, each rank scored its shard; sum the counts.
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    correct = total = 0
    for batch in loader:
        batch = batch.to(device)
        logits = model(batch.x).logits
        correct += (logits.argmax(1) == batch.y).sum().item()
        total += batch.y.numel()
    if isinstance(model, nn.Module):
        model.train(was_training)
    if across_ranks:
        correct, total = distributed.sum_across_ranks(
            torch.tensor([correct, total], dtype=torch.float64, device=device)).tolist()
    return 100.0 * correct / max(total, 1)


def evaluate_splits(task: "Task", model: nn.Module | Callable[[Tensor], object],
                    splits: Mapping[str, Iterable], device: torch.device,
                    across_ranks: bool = False) -> dict[str, float]:
    """`<split>_<metric>` for each split (in order) and each of the task's metrics,
    e.g. {"val_top1": ..., "test_top1": ...} for classification."""
    scores: dict[str, float] = {}
    for split, loader in splits.items():
        for metric, value in task.evaluate(model, loader, device, across_ranks).items():
            scores[f"{split}_{metric}"] = value
    return scores
