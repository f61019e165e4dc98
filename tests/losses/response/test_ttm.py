"""ttm (Zheng & Yang, ICLR 2024): a hand-computed value, the paper's identities, gradient, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.losses import ce_weight, loss_class, validate_losses
from kdrun.losses.response.kd import soft_kl
from kdrun.losses.response.ttm import TTMConfig, transformed_teacher_kl
from kdrun.models import ModelOutput

torch.manual_seed(0)
S = torch.randn(5, 7, dtype=torch.float64) * 2
T_ = torch.randn(5, 7, dtype=torch.float64) * 3


def output(logits):
    return ModelOutput(logits=logits, features=[torch.zeros(logits.shape[0], 1, 2, 2)],
                       embedding=logits)


def ttm_terms(cfg, s, t):
    batch = Batch(x=torch.zeros(len(s), 1, 2, 2), y=torch.zeros(len(s), dtype=torch.long),
                  index=torch.arange(len(s)))
    return loss_class("ttm")(cfg, output(s), output(t))(output(s), output(t), batch)


def softmax_np(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_hand_computed_value():
    # teacher p_t = [0.8, 0.2], gamma = 1/2: p^ = [sqrt .8, sqrt .2] / (sqrt .8 + sqrt .2) = [2/3, 1/3]
    # student q = [1/2, 1/2]: KL(p^ || q) = 2/3 ln(4/3) + 1/3 ln(2/3) = (5 ln 2 - 3 ln 3) / 3
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(4.0), 0.0]])
    kl = (5 * math.log(2) - 3 * math.log(3)) / 3                     # 0.0566330
    got = ttm_terms(TTMConfig(gamma=0.5, beta=45.0), s, t)
    assert list(got) == ["ttm"]
    assert got["ttm"].item() == pytest.approx(45 * kl, rel=1e-6)     # 2.548486
    # WTTM weighs by U_1/2(p_t) = sqrt .8 + sqrt .2 = 3 / sqrt 5
    weighted = ttm_terms(TTMConfig(gamma=0.5, beta=45.0, weighted=True), s, t)["ttm"]
    assert weighted.item() == pytest.approx(45 * kl * 3 / math.sqrt(5), rel=1e-6)  # 3.419153


def test_power_transform_is_temperature_scaling():
    """p_t^gamma / sum p_t^gamma (the paper's definition) is softmax(z_t / T), T = 1/gamma."""
    gamma = 0.25
    p_t = softmax_np(T_.numpy())
    p_hat = p_t**gamma / (p_t**gamma).sum(1, keepdims=True)
    q = softmax_np(S.numpy())
    by_hand = (p_hat * np.log(p_hat / q)).sum(1).mean()
    assert transformed_teacher_kl(S, T_, gamma).item() == pytest.approx(by_hand, rel=1e-9)
    u = (p_t**gamma).sum(1)
    by_hand_w = (u * (p_hat * np.log(p_hat / q)).sum(1)).mean()
    assert transformed_teacher_kl(S, T_, gamma, weighted=True).item() == pytest.approx(by_hand_w, rel=1e-9)


def test_gamma_one_is_kd_at_temperature_one():
    assert transformed_teacher_kl(S, T_, 1.0).item() == pytest.approx(soft_kl(S, T_, 1.0).item(), rel=1e-9)


def test_ttm_is_kd_plus_a_renyi_entropy_term():
    """Paper Eq. 15: D(p_T || q) = T D(p_T || q_T) - (T - 1) H_1/T(q) + (T - 1) H(p_T)."""
    temp = 4.0
    p_hat, q, q_t = softmax_np(T_.numpy() / temp), softmax_np(S.numpy()), softmax_np(S.numpy() / temp)
    kl_t = (p_hat * np.log(p_hat / q_t)).sum(1)
    renyi = np.log((q ** (1 / temp)).sum(1)) / (1 - 1 / temp)
    shannon = -(p_hat * np.log(p_hat)).sum(1)
    rhs = (temp * kl_t - (temp - 1) * renyi + (temp - 1) * shannon).mean()
    assert transformed_teacher_kl(S, T_, 1 / temp).item() == pytest.approx(rhs, rel=1e-9)


def test_wttm_weight_runs_from_one_to_k_to_the_one_minus_gamma():
    gamma, k = 0.1, T_.shape[1]
    uniform, peaked = torch.zeros(1, k, dtype=torch.float64), torch.zeros(1, k, dtype=torch.float64)
    peaked[0, 0] = 200.0
    for teacher, weight in ((uniform, k ** (1 - gamma)), (peaked, 1.0)):
        plain = transformed_teacher_kl(S[:1], teacher, gamma)
        assert transformed_teacher_kl(S[:1], teacher, gamma, weighted=True).item() \
            == pytest.approx(weight * plain.item(), rel=1e-6)


def test_zero_at_the_transformed_teacher_and_gradient_is_q_minus_p_hat():
    gamma, beta = 0.2, 3.0
    # z_s = gamma z_t + c: q equals p^ (a shift per sample changes no softmax)
    assert transformed_teacher_kl(gamma * T_ + 1.5, T_, gamma).item() == pytest.approx(0.0, abs=1e-12)
    s = S.clone().requires_grad_(True)
    ttm_terms(TTMConfig(gamma=gamma, beta=beta), s, T_)["ttm"].backward()
    expected = beta * (torch.softmax(S, 1) - torch.softmax(gamma * T_, 1)) / S.shape[0]  # Eq. 20
    assert torch.allclose(s.grad, expected, atol=1e-12)


def test_config_defaults_and_validation(compose_cfg):
    cfg = compose_cfg(["loss=ttm"])
    validate_losses(cfg.loss)
    assert (cfg.loss.ttm.gamma, cfg.loss.ttm.beta, cfg.loss.ttm.weighted) == (0.1, 45.0, False)
    assert ce_weight(cfg.loss) == 1.0 and loss_class("ttm").knowledge == "response"
    for field, value, needle in (("gamma", 0.0, r"loss\.ttm\.gamma=0\.0 must be within \(0, 1\]"),
                                 ("gamma", 1.5, r"loss\.ttm\.gamma=1\.5"),
                                 ("beta", 0.0, r"loss\.ttm\.beta=0\.0 must be > 0")):
        with pytest.raises(ConfigError, match=needle):
            loss_class("ttm").validate(TTMConfig(**{field: value}))
