"""progressive: Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion
Models" (ICLR 2022), Algorithm 2.

A student that samples in N steps learns to do in one DDIM step what its teacher does in
two. At t = i / N the teacher steps z_t -> z_t' -> z_t'' (t' = t - 1/2N, t'' = t - 1/N);
the target is the x~ that one DDIM step from z_t would have to predict to land on z_t'':

    x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

and the student's x-prediction x_hat = alpha_t z_t - sigma_t v_hat is pulled to it with the
paper's "truncated SNR" weight max(SNR_t, 1) (SNR = alpha^2 / sigma^2); `weighting=snr_plus_one`
is the paper's other choice, 1 + SNR_t, the same as a plain MSE on v. The student starts as a
copy of its teacher and the next round halves N again (kdrun/tasks/diffusion.py runs the rounds).

The teacher's two steps call the teacher, which a loss never does: the round's objective
(kdrun/tasks/diffusion.py) runs them with `ddim_step` and hands this loss the target as the
teacher's output (logits = x~). Where this differs from the paper: time is sampled on the
student's grid as in Algorithm 2, but the schedule ends at alpha_1 = cos(pi / 2) = 0 exactly,
and x~ is not clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.models.output import ModelOutput
from kdrun.models.zoo.denoiser import NoisyBatch, alpha_sigma

WEIGHTINGS = ("truncated_snr", "snr_plus_one")


def distilled_target(z_t: Tensor, z_s: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """The x~ for which one DDIM step from (z_t, t) reaches z_s at time s < t."""
    shape = (-1, *([1] * (z_t.dim() - 1)))
    a_t, s_t = (v.reshape(shape) for v in alpha_sigma(t))
    a_s, s_s = (v.reshape(shape) for v in alpha_sigma(s))
    ratio = s_s / s_t
    return (z_s - ratio * z_t) / (a_s - ratio * a_t)


def snr_weight(t: Tensor, weighting: str) -> Tensor:
    """max(SNR_t, 1) ("truncated_snr") or 1 + SNR_t ("snr_plus_one"), per sample."""
    alpha, sigma = alpha_sigma(t)
    snr = alpha.square() / sigma.square().clamp_min(1e-20)
    if weighting == "truncated_snr":
        return snr.clamp_min(1.0)
    if weighting == "snr_plus_one":
        return 1.0 + snr
    raise ValueError(f"unknown weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)}")


def x_prediction(v_hat: Tensor, noisy: NoisyBatch) -> Tensor:
    """x_hat = alpha_t z_t - sigma_t v_hat."""
    shape = (-1, *([1] * (v_hat.dim() - 1)))
    alpha, sigma = (v.reshape(shape) for v in alpha_sigma(noisy.t))
    return alpha * noisy.z - sigma * v_hat


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).square().flatten(1).mean(1)


@dataclass
class ProgressiveConfig(LossConfig):
    weighting: str = "truncated_snr"   # truncated_snr (the paper's) | snr_plus_one


@register_loss
class Progressive(DistillationLoss):
    name = "progressive"
    config = ProgressiveConfig
    tasks = ("diffusion",)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.weighting not in WEIGHTINGS:
            raise ConfigError(f"{cls.key('weighting')}={cfg.weighting}: unknown weighting; use "
                              f"one of {', '.join(WEIGHTINGS)} (truncated_snr is the paper's)")

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: NoisyBatch):
        """student.logits: v_hat on batch.z; teacher.logits: the two-step target x~."""
        error = per_sample_mse(x_prediction(student.logits, batch), teacher.logits)
        return {"progressive": (snr_weight(batch.t, self.cfg.weighting) * error).mean()}
