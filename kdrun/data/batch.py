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
    """

    x: Tensor
    y: Tensor
    index: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(self.x.to(device, non_blocking=non_blocking),
                     self.y.to(device, non_blocking=non_blocking),
                     self.index.to(device, non_blocking=non_blocking))

    def __len__(self) -> int:
        return int(self.y.shape[0])
