"""A trained model that teaches: eval mode, no grad, never a learnable part."""

from __future__ import annotations

import torch
from torch import nn

from kdrun.models.output import ModelOutput


class FrozenTeacher:
    """Serves a model's outputs for a batch. Held outside the student's module tree, so it
    never reaches the optimizer, the checkpoint or train(). `cached`: serves stored outputs
    (kdrun/cache) instead of running the model."""

    cached = False

    def __init__(self, model: nn.Module, name: str):
        self.model = model.eval().requires_grad_(False)
        self.name = name

    @torch.no_grad()
    def __call__(self, batch) -> ModelOutput:
        self.model.eval()
        return self.model(batch.x)
