"""Denoisers for task=diffusion: diffusers' UNet2DModel predicting v in continuous time.

Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models" (ICLR 2022):
a noisy image z_t = alpha_t x + sigma_t eps with the cosine schedule alpha_t = cos(pi t / 2),
sigma_t = sin(pi t / 2), t in [0, 1]; the network predicts v = alpha_t eps - sigma_t x, from
which x_hat = alpha_t z_t - sigma_t v_hat. v (unlike eps) gives a usable x_hat at t = 1,
where alpha_t = 0, which a one-step student needs. Sampling is DDIM (Song et al. 2021,
eta = 0) on the uniform grid t_i = i / N.

diffusers' schedulers are discrete-time (1000 steps); the paper distils in continuous time,
so the schedule and the DDIM update are written out here (a few lines each, checked against
diffusers' DDIMScheduler in tests/losses/test_diffusion_losses.py). The network takes the
time as 1000 t, the range its sinusoidal embedding is laid out for.

The ModelOutput of a denoiser: logits = v_hat (B, C, H, W), the prediction; no stages are
exposed (features = []), embedding = v_hat flattened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model

TIME_SCALE = 1000.0  # t in [0, 1] -> the network's timestep input


def alpha_sigma(t: Tensor) -> tuple[Tensor, Tensor]:
    """The cosine schedule: alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2)."""
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


def _per_sample(value: Tensor, like: Tensor) -> Tensor:
    return value.reshape(-1, *([1] * (like.dim() - 1)))


def ddim_step(x_hat: Tensor, z_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """One deterministic DDIM step from time t to s < t, given the prediction x_hat:
    z_s = alpha_s x_hat + sigma_s (z_t - alpha_t x_hat) / sigma_t."""
    a_t, s_t = (_per_sample(v, z_t) for v in alpha_sigma(t))
    a_s, s_s = (_per_sample(v, z_t) for v in alpha_sigma(s))
    return a_s * x_hat + s_s * (z_t - a_t * x_hat) / s_t


@dataclass(frozen=True)
class NoisyBatch:
    """Clean images x in [-1, 1], the noise eps, the times t (B,) and z_t = alpha_t x + sigma_t eps."""

    x: Tensor
    eps: Tensor
    t: Tensor
    z: Tensor

    @classmethod
    def of(cls, x: Tensor, eps: Tensor, t: Tensor) -> "NoisyBatch":
        alpha, sigma = (_per_sample(v, x) for v in alpha_sigma(t))
        return cls(x, eps, t, alpha * x + sigma * eps)


class Denoiser(nn.Module):
    """A v-predicting U-Net: forward(z_t, t) with t in [0, 1] per sample."""

    def __init__(self, in_chans: int, image_size: int | None, block_out_channels: tuple[int, ...],
                 down_block_types: tuple[str, ...], up_block_types: tuple[str, ...],
                 layers_per_block: int, norm_num_groups: int, dropout: float = 0.0):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(sample_size=image_size, in_channels=in_chans, out_channels=in_chans,
                                block_out_channels=tuple(block_out_channels),
                                down_block_types=tuple(down_block_types),
                                up_block_types=tuple(up_block_types),
                                layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
                                dropout=dropout)

    def forward(self, z: Tensor, t: Tensor) -> ModelOutput:
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[0])
        v = self.unet(z, t * TIME_SCALE).sample
        return ModelOutput(logits=v, features=[], embedding=v.flatten(1))

    def predict_x(self, z: Tensor, t: Tensor) -> Tensor:
        """x_hat = alpha_t z_t - sigma_t v_hat."""
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[0])
        alpha, sigma = (_per_sample(v, z) for v in alpha_sigma(t))
        return alpha * z - sigma * self(z, t).logits


@torch.no_grad()
def ddim_sample(model: Denoiser, noise: Tensor, steps: int) -> Tensor:
    """x from z_1 = noise in `steps` DDIM steps on t_i = i / steps (no clipping on the way, so
    a distilled student's N steps approximate exactly what its teacher's 2N steps compute)."""
    was_training = model.training
    model.eval()
    z = noise
    for i in range(steps, 0, -1):
        t = torch.full((z.shape[0],), i / steps, device=z.device)
        z = ddim_step(model.predict_x(z, t), z, t, t - 1.0 / steps)
    model.train(was_training)
    return z


def _unet(in_chans: int, image_size: int | None, channels: tuple[int, ...], attention: tuple[bool, ...],
          layers_per_block: int, norm_num_groups: int, **kwargs) -> Denoiser:
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return Denoiser(in_chans, image_size, channels, down, up, layers_per_block, norm_num_groups,
                    **kwargs)


@register_model(kind="denoiser")
def denoiser_tiny(num_classes: int = 0, in_chans: int = 1, image_size: int | None = None,
                  **kwargs) -> Denoiser:
    """651 k parameters: two resolutions of 32 and 64 channels, no attention (16 px digits)."""
    return _unet(in_chans, image_size, (32, 64), (False, False), 1, 8, **kwargs)


@register_model(kind="denoiser")
def denoiser_small(num_classes: int = 0, in_chans: int = 1, image_size: int | None = None,
                   **kwargs) -> Denoiser:
    """2.8 M parameters: 64 and 128 channels, attention at the lower resolution."""
    return _unet(in_chans, image_size, (64, 128), (False, True), 1, 16, **kwargs)


@register_model(kind="denoiser")
def denoiser_cifar(num_classes: int = 0, in_chans: int = 3, image_size: int | None = None,
                   **kwargs) -> Denoiser:
    """49.5 M parameters, 33.4 GFLOPs per 32 px image: the U-Net of Salimans & Ho's CIFAR-10
    distillation config (google-research diffusion_distillation, config/cifar_distill.py:
    256 channels at every resolution, 3 residual blocks each, attention at 16 and 8 px, no
    dropout for the student) in diffusers' layout (their resblock resampling and logSNR
    time input are not reproduced)."""
    return _unet(in_chans, image_size, (256, 256, 256), (False, True, True), 3, 32, **kwargs)
