"""Declarative layer choice: pick stages by index and bring pairs to one size."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError


def pick_stages(features: Sequence[Tensor], indices: Sequence[int], key: str) -> list[Tensor]:
    """features[i] for each i (negative counts from the deepest stage); `key` names the config entry."""
    n = len(features)
    for i in indices:
        if not -n <= i < n:
            raise ConfigError(f"{key}={list(indices)}: stage {i} does not exist; the model has "
                              f"{n} stages (0..{n - 1}, or -1..-{n} from the deepest)")
    return [features[i] for i in indices]


def check_pairing(student_stages: Sequence[int], teacher_stages: Sequence[int], key: str) -> None:
    if len(student_stages) != len(teacher_stages) or not student_stages:
        raise ConfigError(f"{key}.student_stages={list(student_stages)} and "
                          f"{key}.teacher_stages={list(teacher_stages)} must pair up one to one")


def match_spatial(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger map to the smaller one's size (cross-architecture pairs)."""
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    if (ha, wa) == (hb, wb):
        return a, b
    size = (min(ha, hb), min(wa, wb))
    if (ha, wa) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if (hb, wb) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b
