"""One-time conversion of raw arrays to model-ready float tensors.

In-memory sets are resized and normalized once at load; batches are then plain
slices, which keeps a CPU epoch cheap.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def to_float_images(raw: np.ndarray, max_value: float, image_size: int) -> Tensor:
    """(N, C, h, w) array of 0..max_value -> (N, C, image_size, image_size) float32 in [0, 1],
    resized bilinearly (antialiased when shrinking)."""
    x = torch.from_numpy(np.ascontiguousarray(raw)).to(torch.float32, copy=True).div_(max_value)
    if x.shape[-2:] != (image_size, image_size):
        shrink = image_size < max(x.shape[-2:])
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=shrink).clamp_(0.0, 1.0)
    return x


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of (N, C, H, W): float32 sums per chunk, accumulated in
    float64 (accurate for 50k CIFAR images, without a float64 copy); a constant channel gets std 1."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in torch.split(x, 1024):
        total += chunk.sum(dim=(0, 2, 3)).double()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).double()
    count = x.numel() // x.shape[1]
    mean = total / count
    var = (total_sq / count - mean.square()) * count / max(count - 1, 1)
    std = var.clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.float(), std.float()


def normalize_(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """In place: (x - mean) / std per channel."""
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
