"""Top-1 accuracy of a model on a loader (eval mode, no grad)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from kdrun.engine import distributed


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
