"""task=diffusion's formulas against hand computations and known identities: the cosine
schedule, the DDIM step, progressive distillation's two-step target and weights (Salimans &
Ho 2022), the v-MSE of loss=denoise, and the Fréchet distance of the FD score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdrun.losses.response.denoise import Denoise, DenoiseConfig, v_target
from kdrun.losses.response.progressive import (Progressive, ProgressiveConfig, distilled_target,
                                               snr_weight, x_prediction)
from kdrun.models.output import ModelOutput
from kdrun.models.zoo.denoiser import NoisyBatch, alpha_sigma, ddim_sample, ddim_step
from kdrun.tasks.diffusion_scoring import feature_stats, frechet_distance


def out(v):
    return ModelOutput(v, [], v.flatten(1))


def test_cosine_schedule_and_ddim_step_by_hand():
    alpha, sigma = alpha_sigma(torch.tensor([0.0, 1 / 3, 0.5, 1.0]))
    assert torch.allclose(alpha, torch.tensor([1.0, math.sqrt(3) / 2, math.sqrt(0.5), 0.0]), atol=1e-7)
    assert torch.allclose(alpha.square() + sigma.square(), torch.ones(4))
    # t = 1 -> s = 1/3 with x_hat = 0.5 from z = 2: eps_hat = (2 - 0 * 0.5) / 1 = 2,
    # z_s = cos(pi/6) * 0.5 + sin(pi/6) * 2 = 0.4330 + 1.0
    z_s = ddim_step(torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.tensor([1.0]),
                    torch.tensor([1 / 3]))
    assert z_s.item() == pytest.approx(math.sqrt(3) / 4 + 1.0, abs=1e-6)


def test_ddim_step_is_exact_with_the_true_x():
    torch.manual_seed(0)
    x, eps = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    t, s = torch.rand(5) * 0.9 + 0.1, torch.rand(5) * 0.09
    z_t = NoisyBatch.of(x, eps, t).z
    assert torch.allclose(ddim_step(x, z_t, t, s), NoisyBatch.of(x, eps, s).z, atol=1e-5)


def test_distilled_target_by_hand_and_as_the_inverse_of_one_step():
    # t = 1, s = 1/2: alpha_t = 0, sigma_t = 1, alpha_s = sigma_s = sqrt(1/2):
    # x~ = (z_s - sqrt(1/2) z_t) / (sqrt(1/2) - 0) = sqrt(2) z_s - z_t
    target = distilled_target(torch.tensor([[3.0]]), torch.tensor([[1.0]]), torch.tensor([1.0]),
                              torch.tensor([0.5]))
    assert target.item() == pytest.approx(math.sqrt(2) * 1.0 - 3.0, abs=1e-6)
    torch.manual_seed(1)
    z_t, z_s = torch.randn(6, 1, 3, 3), torch.randn(6, 1, 3, 3)
    t = torch.tensor([1.0, 0.75, 0.5, 0.5, 0.25, 0.125])
    s = t - torch.tensor([0.25, 0.25, 0.5, 0.125, 0.25, 0.0625])  # s = 0 included: x~ = z_0
    target = distilled_target(z_t, z_s, t, s)
    assert torch.allclose(ddim_step(target, z_t, t, s), z_s, atol=1e-5)
    assert torch.allclose(target[4], z_s[4], atol=1e-6)


def test_with_a_perfect_teacher_the_target_is_the_data():
    """A teacher that always predicts the true x: its two DDIM steps stay on the data's
    trajectory, so one student step must predict x itself (Algorithm 2's fixed point)."""
    torch.manual_seed(2)
    x, eps = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    steps = 4
    t = torch.tensor([1.0, 0.75, 0.5, 0.25])
    z = NoisyBatch.of(x, eps, t).z
    half, full = t - 0.5 / steps, t - 1.0 / steps
    z_full = ddim_step(x, ddim_step(x, z, t, half), half, full)
    assert torch.allclose(distilled_target(z, z_full, t, full), x, atol=1e-4)


def test_snr_weights_by_hand():
    t = torch.tensor([0.5, 1 / 3, 1.0])  # SNR = 1, 3, 0
    assert torch.allclose(snr_weight(t, "truncated_snr"), torch.tensor([1.0, 3.0, 1.0]), atol=1e-5)
    assert torch.allclose(snr_weight(t, "snr_plus_one"), torch.tensor([2.0, 4.0, 1.0]), atol=1e-5)


def test_progressive_loss_by_hand():
    """Two 1-pixel samples at t = 1/3 (alpha = sqrt(3)/2, sigma = 1/2, weight 3) and t = 1
    (alpha = 0, sigma = 1, weight 1); x_hat = alpha z - sigma v_hat."""
    x = torch.zeros(2, 1, 1, 1)
    noisy = NoisyBatch(x, x, torch.tensor([1 / 3, 1.0]), torch.tensor([2.0, 2.0]).view(2, 1, 1, 1))
    v_hat = torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)
    target = torch.tensor([0.0, 0.0]).view(2, 1, 1, 1)
    x_hat = [math.sqrt(3) / 2 * 2 - 0.5 * 1.0, 0.0 * 2 - 1.0 * 0.5]
    assert torch.allclose(x_prediction(v_hat, noisy).flatten(), torch.tensor(x_hat))
    expected = (3 * x_hat[0] ** 2 + 1 * x_hat[1] ** 2) / 2
    loss = Progressive(ProgressiveConfig(), None, None)
    value = loss(out(v_hat), out(target), noisy)["progressive"].item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert loss(out(v_hat), out(x_prediction(v_hat, noisy)), noisy)["progressive"].item() == 0.0


def test_v_mse_is_the_x_error_weighted_by_one_plus_snr():
    torch.manual_seed(3)
    x, eps, t = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4), torch.rand(8) * 0.98 + 0.01
    noisy = NoisyBatch.of(x, eps, t)
    v_hat = torch.randn(8, 1, 4, 4)
    per_sample_v = (v_hat - v_target(noisy)).square().flatten(1).mean(1)
    per_sample_x = (x_prediction(v_hat, noisy) - x).square().flatten(1).mean(1)
    assert torch.allclose(per_sample_v, snr_weight(t, "snr_plus_one") * per_sample_x, rtol=1e-3)
    loss = Denoise(DenoiseConfig(), None, None)
    assert loss(out(v_hat), None, noisy)["denoise"].item() == pytest.approx(
        per_sample_v.mean().item(), rel=1e-5)
    # the true v gives back the true x
    assert torch.allclose(x_prediction(v_target(noisy), noisy), x, atol=1e-5)


class ConstantX(torch.nn.Module):
    """The ideal denoiser of a one-image data set: x_hat is that image whatever z_t is."""

    def __init__(self, image):
        super().__init__()
        self.image = image

    def predict_x(self, z, t):
        return self.image.expand_as(z)


@pytest.mark.parametrize("steps", [1, 2, 8])
def test_ddim_sampling_of_the_ideal_one_image_denoiser_returns_the_image(steps):
    image = torch.randn(1, 1, 4, 4)
    samples = ddim_sample(ConstantX(image), torch.randn(3, 1, 4, 4), steps)
    assert torch.allclose(samples, image.expand(3, -1, -1, -1), atol=1e-5)


def test_frechet_distance_of_diagonal_gaussians_and_against_scipy():
    mu1, mu2 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([3.0, 1.0], dtype=torch.float64)
    a, b = torch.tensor([4.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 9.0], dtype=torch.float64)
    # ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2 = 9 + (1 + 4)
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(14.0)
    assert frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) == pytest.approx(0.0, abs=1e-9)
    from scipy import linalg

    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6))
    s1, s2 = feature_stats(torch.from_numpy(f1)), feature_stats(torch.from_numpy(f2))
    c1, c2 = s1[1].numpy(), s2[1].numpy()
    root = linalg.sqrtm(c1 @ c2).real
    reference = ((s1[0] - s2[0]).square().sum().item() + np.trace(c1) + np.trace(c2)
                 - 2 * np.trace(root))
    assert frechet_distance(*s1, *s2) == pytest.approx(reference, rel=1e-6)
