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
    dy, dx = torch.randint(0, 2 * pad + 1, (2, x.shape[0]), generator=generator)
    return crop_at(x, pad, fill, dy, dx)


def crop_at(x: Tensor, pad: int, fill: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Pad by `pad`, then crop each sample at its offset (dy, dx) in [0, 2 * pad]."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = fill.view(1, c, 1, 1).expand(b, c, hp, wp).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
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

    def draw_views(self, num_views: int, num_samples: int,
                   generator: torch.Generator) -> dict[str, Tensor]:
        """Fixed parameters of `num_views` augmented views of every sample: (V, N) each."""
        shape = (num_views, num_samples)
        return {"dy": torch.randint(0, 2 * self.pad + 1, shape, generator=generator),
                "dx": torch.randint(0, 2 * self.pad + 1, shape, generator=generator),
                "flip": (torch.rand(shape, generator=generator) < 0.5) & self.hflip}

    def apply_view(self, x: Tensor, views: dict[str, Tensor], view: Tensor,
                   index: Tensor) -> Tensor:
        """The stored views (view[i], index[i]) of a batch: the same pixels every time."""
        if self.pad > 0:
            x = crop_at(x, self.pad, self.fill, views["dy"][view, index], views["dx"][view, index])
        flip = views["flip"][view, index]
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
