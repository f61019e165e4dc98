"""Batched train augmentation on in-memory image tensors.

Works on a whole (B, C, H, W) batch at once with an explicit torch.Generator:
no per-sample Python, and the draws are a pure function of the generator's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def random_crop(x: Tensor, pad: int, fill: Tensor, generator: torch.Generator) -> Tensor:
    """Pad every side by `pad` with the per-channel `fill`, then crop back at a random offset
    per sample (a random translation of up to `pad` pixels), as one gather over the batch."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = fill.view(1, c, 1, 1).expand(b, c, hp, wp).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator)
    window = (torch.arange(h)[:, None] * wp + torch.arange(w)[None, :]).view(1, h * w)
    where = (window + (dy * wp + dx)[:, None]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.view(b, c, hp * wp).gather(2, where).view(b, c, h, w)


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class BatchAugment:
    """A dataset's usual train augmentation: translation by padded crop, optional flip.

    fill: per-channel value of a black pixel after normalization, so padding looks
    like the dark background the datasets have, not like the mean image.
    """

    pad: int
    hflip: bool
    fill: Tensor

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        x = random_crop(x, self.pad, self.fill, generator)
        return random_hflip(x, generator) if self.hflip else x
