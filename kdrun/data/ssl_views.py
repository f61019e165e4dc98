"""Multi-crop views of a batch (Caron et al., DINO, ICCV 2021; SwAV, NeurIPS 2020).

Every draw comes from the generator it is handed, so a batch's views are a pure function of
(seed, epoch, batch): a resumed cell sees the views an uninterrupted one saw. Crops are cut
and resized for the whole batch at once by one affine grid sample (bilinear), not per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.data.ssl_config import MultiCropConfig

RATIO = (3 / 4, 4 / 3)  # aspect ratios of a crop, as torchvision's RandomResizedCrop


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def resized_crops(x: Tensor, size: int, scale: tuple[float, float], flip: bool,
                  generator: torch.Generator) -> Tensor:
    """One random resized crop of each image of `x` (B, C, H, W) -> (B, C, size, size): area
    fraction in `scale`, aspect ratio in RATIO (clipped to the image), a uniform position,
    mirrored with probability 1/2 when `flip`."""
    b = x.shape[0]
    area = _uniform(b, *scale, generator)
    ratio = torch.exp(_uniform(b, math.log(RATIO[0]), math.log(RATIO[1]), generator))
    width = torch.sqrt(area * ratio).clamp(max=1.0)     # fractions of the image side
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - width) * (2 * torch.rand(b, generator=generator) - 1)  # centre in [-1, 1] coords
    cy = (1 - height) * (2 * torch.rand(b, generator=generator) - 1)
    mirror = torch.ones(b)
    if flip:
        mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta.to(x.dtype), [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="border",
                         align_corners=False)


def jitter(x: Tensor, contrast: float, brightness: float, generator: torch.Generator) -> Tensor:
    """Per image: contrast scaled by a factor in [1 - contrast, 1 + contrast] about the image's
    mean, then a brightness shift in [-brightness, brightness] (normalised units, so the same
    in raw pixels up to the data's std)."""
    b = x.shape[0]
    if contrast > 0:
        factor = _uniform(b, 1 - contrast, 1 + contrast, generator).view(b, 1, 1, 1).to(x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + factor * (x - mean)
    if brightness > 0:
        x = x + _uniform(b, -brightness, brightness, generator).view(b, 1, 1, 1).to(x)
    return x


def multi_crop(x: Tensor, views: MultiCropConfig, generator: torch.Generator) -> tuple[Tensor, ...]:
    """The views of a batch: `global_crops` tensors (B, C, G, G), then `local_crops` tensors
    (B, C, L, L), each image cropped, resized and jittered independently."""
    crops = []
    for n, size, scale in ((views.global_crops, views.global_size, (views.global_min_scale, 1.0)),
                           (views.local_crops, views.local_size,
                            (views.local_min_scale, views.local_max_scale))):
        for _ in range(n):
            crop = resized_crops(x, size, scale, views.flip, generator)
            crops.append(jitter(crop, views.contrast, views.brightness, generator))
    return tuple(crops)
