"""The one thing every kdrun loader yields."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


IGNORE_INDEX = -100  # a target that is not scored (padding, prompt tokens); PyTorch's convention


@dataclass(frozen=True)
class Batch:
    """x: (B, C, H, W) float32, normalized. y: (B,) int64 labels.

    Token sequences (task=lm): x (B, T) int64 input ids, y (B, T) int64 next-token
    targets, IGNORE_INDEX where a token is not scored (padding, prompt).

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


def unscore_prompt(y: Tensor, prompt_tokens: int) -> Tensor:
    """Next-token targets with a prompt of `prompt_tokens` tokens unscored: target i is
    token i + 1, so the first prompt_tokens - 1 targets are prompt tokens."""
    y = y.clone()
    y[:, :max(prompt_tokens - 1, 0)] = IGNORE_INDEX
    return y
