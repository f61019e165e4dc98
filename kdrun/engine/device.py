"""Device choice (`trainer.device=auto`) and CPU thread count."""

from __future__ import annotations

from typing import Optional

import torch

from kdrun.config.errors import ConfigError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"trainer.device={name}: {e}; use auto, cpu or cuda[:i]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: no CUDA device here; use trainer.device=auto or cpu")
    return device


def set_threads(threads: Optional[int]) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"trainer.threads={threads} must be >= 1 (or null for torch's default)")
        torch.set_num_threads(threads)
