"""Which student parameters feed a stage: found by autograd, not by architecture knowledge.

Pre-training stages (FitNet's hint stage, AB's initialisation) train the student
only up to the stages they guide. Rather than naming modules per family, one
probe forward (eval mode, so BatchNorm statistics stay untouched; a private
generator, so the global RNG is not consumed) is differentiated from the chosen
stage outputs: a parameter belongs to the stage iff it is connected to them in
the graph. This works for the zoo and for timm models alike, and follows the
model's real wiring (e.g. the BatchNorm that produces a WRN preact stage lives in
the next stage's first block and is still found).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from kdrun.losses.base import LossContext


def probe_input_shape(model: nn.Module, context: LossContext | None) -> tuple[int, int]:
    """(in_chans, image_size) from the loss context, else from the first conv (32 px)."""
    if context is not None:
        return context.in_chans, context.image_size
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return (conv.in_channels if conv is not None else 3), 32


def parameters_feeding(model: nn.Module, field: str, indices: Sequence[int],
                       context: LossContext | None = None) -> list[nn.Parameter]:
    """Trainable parameters of `model` that `getattr(output, field)[i]` depends on, i in indices."""
    params = [p for p in model.parameters() if p.requires_grad]
    in_chans, size = probe_input_shape(model, context)
    device = params[0].device if params else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_chans, size, size, generator=generator).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            stages = getattr(model(x), field)
            target = sum(stages[i].sum() for i in indices)
            grads = torch.autograd.grad(target, params, allow_unused=True)
    finally:
        model.train(was_training)
    return [p for p, g in zip(params, grads) if g is not None]
