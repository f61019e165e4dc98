"""denoise: the denoising objective alone (no teacher), task=diffusion's baseline row.

Salimans & Ho (ICLR 2022), Sec. 4: the network predicts v = alpha_t eps - sigma_t x for
z_t = alpha_t x + sigma_t eps at t ~ U(0, 1), trained by the mean squared error on v, which
is the x-space error weighted by 1 + SNR_t ("SNR+1" weighting):
||v_hat - v||^2 = ||x_hat - x||^2 / sigma_t^2 = (1 + SNR_t) ||x_hat - x||^2.
It trains the teacher once into the cache (DiffusionTask.supervised) and, as `loss=denoise`,
continues training the same model without a teacher for the rounds a distilled student gets,
so the table compares equal training.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.models.output import ModelOutput
from kdrun.models.zoo.denoiser import NoisyBatch, alpha_sigma


def v_target(noisy: NoisyBatch) -> Tensor:
    """v = alpha_t eps - sigma_t x."""
    shape = (-1, *([1] * (noisy.x.dim() - 1)))
    alpha, sigma = (v.reshape(shape) for v in alpha_sigma(noisy.t))
    return alpha * noisy.eps - sigma * noisy.x


@dataclass
class DenoiseConfig(LossConfig):
    """No settings of its own (warmup_epochs only)."""


@register_loss
class Denoise(DistillationLoss):
    name = "denoise"
    config = DenoiseConfig
    needs_teacher = False
    tasks = ("diffusion",)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch: NoisyBatch):
        return {"denoise": (student.logits - v_target(batch)).square().mean()}
