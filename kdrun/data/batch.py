"""The one thing every kdrun loader yields."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """x: (B, C, H, W) float32, normalized. y: (B,) int64 labels.

    index: (B,) int64 position of each sample in its split (0..n-1), the same in
    every epoch, so memory banks and teacher-output caches can be keyed by it.
    view: (B,) int64 augmented view of each sample when data.aug_views is set
    (the teacher-output cache is keyed by (view, index)); None otherwise.
    """

    x: Tensor
    y: Tensor
    index: Tensor
    view: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.index), move(self.view))

    def __len__(self) -> int:
        return int(self.y.shape[0])
