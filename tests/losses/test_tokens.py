"""Token-level LM distillation formulas: hand-computed values, identities, masking, gradients, top-k."""

from __future__ import annotations

import math

import pytest
import torch

from kdrun.config.errors import ConfigError
from kdrun.losses.tokens import (generalized_jsd, token_kl, token_tvd, topk_kl, topk_targets,
                                 vocab_check)

LN2, LN3 = math.log(2.0), math.log(3.0)
# One sequence, two tokens, V = 2.
# Teacher: p_t = [1/4, 3/4], [2/3, 1/3]; student: p_s = [1/2, 1/2], [1/3, 2/3].
TEACHER = torch.tensor([[[0.0, LN3], [LN2, 0.0]]])
STUDENT = torch.tensor([[[0.0, 0.0], [0.0, LN2]]])
ALL = torch.ones(1, 2, dtype=torch.bool)
FORWARD = (0.25 * math.log(0.5) + 0.75 * math.log(1.5) + LN2 / 3) / 2
REVERSE = (0.5 * LN2 + 0.5 * math.log(2 / 3) + LN2 / 3) / 2
TVD = (1 / 4 + 1 / 3) / 2


def kl_by_hand(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def jsd_by_hand(p, q, beta):
    m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
    return beta * kl_by_hand(p, m) + (1 - beta) * kl_by_hand(q, m)


def random_pair(seed, shape=(2, 4, 7), scale=3.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(*shape, generator=gen, dtype=dtype) * scale
    teacher = torch.randn(*shape, generator=gen, dtype=dtype) * scale
    mask = torch.rand(*shape[:2], generator=gen) > 0.3
    mask[0, 0] = True
    return student, teacher, mask


def every_divergence(student, teacher, mask, temperature=1.0):
    """name -> value of every divergence in the module, top-k with k < V included."""
    values, indices, rest = topk_targets(teacher, 3, temperature)
    return {
        "forward_kl": token_kl(student, teacher, mask, temperature),
        "reverse_kl": token_kl(student, teacher, mask, temperature, direction="reverse"),
        **{f"jsd_{beta}": generalized_jsd(student, teacher, mask, beta, temperature)
           for beta in (0.0, 0.3, 0.5, 1.0)},
        "tvd": token_tvd(student, teacher, mask, temperature),
        "topk_kl": topk_kl(student, indices, values, rest, mask, temperature),
    }


# ---------------------------------------------------------------- hand-computed values


def test_token_kl_forward_and_reverse_by_hand():
    assert token_kl(STUDENT, TEACHER, ALL).item() == pytest.approx(FORWARD, rel=1e-6)
    assert token_kl(STUDENT, TEACHER, ALL, direction="reverse").item() == pytest.approx(REVERSE, rel=1e-6)
    assert abs(FORWARD - REVERSE) > 1e-3  # the inputs are asymmetric enough to tell the directions apart


def test_token_kl_temperature_softens_and_multiplies_by_t_squared():
    teacher = torch.tensor([[[0.0, 2 * LN3]]])  # at T = 2 this is p_t = [1/4, 3/4]
    student = torch.zeros(1, 1, 2)
    expected = 4 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    value = token_kl(student, teacher, torch.ones(1, 1), temperature=2.0)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_generalized_jsd_by_hand(beta):
    # P = teacher, Q = student, M = beta P + (1 - beta) Q; 0.2 and 0.8 pin which weight goes on which KL.
    expected = (jsd_by_hand([1 / 4, 3 / 4], [1 / 2, 1 / 2], beta)
                + jsd_by_hand([2 / 3, 1 / 3], [1 / 3, 2 / 3], beta)) / 2
    assert generalized_jsd(STUDENT, TEACHER, ALL, beta=beta).item() == pytest.approx(expected, rel=1e-5)


def test_generalized_jsd_endpoints_are_trl_convention():
    # TRL GKDTrainer.generalized_jsd_loss: beta = 0 -> KL(teacher || student),
    # beta = 1 -> KL(student || teacher).
    assert generalized_jsd(STUDENT, TEACHER, ALL, beta=0.0).item() == pytest.approx(FORWARD, rel=1e-6)
    assert generalized_jsd(STUDENT, TEACHER, ALL, beta=1.0).item() == pytest.approx(REVERSE, rel=1e-6)
    student, teacher, mask = random_pair(0)
    for temperature in (1.0, 2.0):
        assert torch.allclose(generalized_jsd(student, teacher, mask, 0.0, temperature),
                              token_kl(student, teacher, mask, temperature))
        assert torch.allclose(generalized_jsd(student, teacher, mask, 1.0, temperature),
                              token_kl(student, teacher, mask, temperature, direction="reverse"))


def test_generalized_jsd_interior_only_tends_to_the_kls_up_to_scale():
    """The mixture is ~ beta KL(P||Q) near 0, ~ (1 - beta) KL(Q||P) near 1: it jumps at the ends."""
    student, teacher, mask = random_pair(1, dtype=torch.float64)
    eps = 1e-5
    forward = token_kl(student, teacher, mask).item()
    reverse = token_kl(student, teacher, mask, direction="reverse").item()
    assert generalized_jsd(student, teacher, mask, eps).item() / eps == pytest.approx(forward, rel=1e-3)
    assert generalized_jsd(student, teacher, mask, 1 - eps).item() / eps == pytest.approx(reverse, rel=1e-3)
    assert generalized_jsd(student, teacher, mask, eps).item() < 1e-3 * forward


def test_token_tvd_by_hand():
    assert token_tvd(STUDENT, TEACHER, ALL).item() == pytest.approx(TVD, rel=1e-6)
    teacher = torch.tensor([[[0.0, 2 * LN3]]])  # T = 2: p_t = [1/4, 3/4], TVD 1/4, scaled by T
    value = token_tvd(torch.zeros(1, 1, 2), teacher, torch.ones(1, 1), 2.0)
    assert value.item() == pytest.approx(0.5, rel=1e-6)


def test_topk_by_hand():
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    teacher, student = torch.tensor([[p]]).log(), torch.tensor([[q]]).log()
    mask = torch.ones(1, 1)
    values, indices, rest = topk_targets(teacher, 1)
    assert indices.tolist() == [[[0]]]
    assert values.item() == pytest.approx(math.log(0.5), rel=1e-6)
    assert rest.item() == pytest.approx(math.log(0.5), rel=1e-6)  # 0.3 + 0.2
    expected = 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)  # outcomes {token 0, rest}
    assert topk_kl(student, indices, values, rest, mask).item() == pytest.approx(expected, rel=1e-5)
    values, indices, rest = topk_targets(teacher, 2)
    assert indices.tolist() == [[[0, 1]]]
    expected = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.3) + 0.2 * math.log(0.2 / 0.5)
    assert topk_kl(student, indices, values, rest, mask).item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- identities


def test_identical_logits_give_zero_for_every_divergence():
    _, teacher, mask = random_pair(2)
    for name, value in every_divergence(teacher.clone(), teacher, mask).items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


def test_jsd_symmetric_at_half_and_bounded_by_ln2():
    student, teacher, mask = random_pair(3, scale=20.0)
    assert torch.allclose(generalized_jsd(student, teacher, mask), generalized_jsd(teacher, student, mask))
    assert generalized_jsd(student, teacher, mask).item() <= LN2 + 1e-6
    disjoint = generalized_jsd(torch.tensor([[[-30.0, 30.0]]]), torch.tensor([[[30.0, -30.0]]]),
                               torch.ones(1, 1))
    assert disjoint.item() == pytest.approx(LN2, rel=1e-5)


def test_tvd_in_unit_interval():
    for seed in range(5):
        student, teacher, mask = random_pair(seed, scale=10.0)
        assert 0.0 <= token_tvd(student, teacher, mask).item() <= 1.0
    disjoint = token_tvd(torch.tensor([[[-30.0, 30.0]]]), torch.tensor([[[30.0, -30.0]]]), torch.ones(1, 1))
    assert disjoint.item() == pytest.approx(1.0, rel=1e-6)


def test_masked_tokens_do_not_change_any_value():
    student, teacher, mask = random_pair(4)
    reference = every_divergence(student, teacher, mask, temperature=2.0)
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    garbage = torch.tensor([1e4, -1e4, float("nan"), float("inf"), 7.0, -3.0, 0.0])
    noisy_student[~mask] = garbage
    noisy_teacher[~mask] = garbage.flip(0)
    for name, value in every_divergence(noisy_student, noisy_teacher, mask, temperature=2.0).items():
        assert torch.equal(value, reference[name]), name


def test_mean_over_counted_tokens_and_mask_dtypes():
    wide_teacher = torch.cat([TEACHER, torch.randn(1, 3, 2)], dim=1)
    wide_student = torch.cat([STUDENT, torch.randn(1, 3, 2)], dim=1)
    mask = torch.tensor([[1, 1, 0, 0, 0]])
    for m in (mask, mask.bool(), mask.float()):
        assert token_kl(wide_student, wide_teacher, m).item() == pytest.approx(FORWARD, rel=1e-6)


def test_empty_mask_gives_zero_with_a_graph():
    student, teacher, _ = random_pair(5)
    student.requires_grad_(True)
    loss = token_kl(student, teacher, torch.zeros(2, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(student.grad == 0)


def test_gradient_reaches_the_student_only():
    student, teacher, mask = random_pair(6)
    for name in every_divergence(student, teacher, mask):
        s, t = student.clone().requires_grad_(True), teacher.clone().requires_grad_(True)
        every_divergence(s, t, mask, temperature=2.0)[name].backward()
        assert t.grad is None, name
        assert torch.isfinite(s.grad).all() and s.grad[mask].abs().sum() > 0, name
        assert torch.all(s.grad[~mask] == 0), name


# ---------------------------------------------------------------- top-k cache


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_with_k_equal_vocab_is_token_kl(temperature):
    student, teacher, mask = random_pair(7)
    values, indices, rest = topk_targets(teacher, teacher.shape[-1], temperature)
    assert torch.isneginf(rest).all()
    s = student.clone().requires_grad_(True)
    full = topk_kl(s, indices, values, rest, mask, temperature)
    assert torch.allclose(full, token_kl(student, teacher, mask, temperature), atol=1e-6)
    full.backward()
    assert torch.isfinite(s.grad).all()


def test_topk_kl_never_exceeds_token_kl():
    for seed in range(5):
        student, teacher, mask = random_pair(10 + seed)
        exact = token_kl(student, teacher, mask).item()
        for k in range(1, teacher.shape[-1]):
            values, indices, rest = topk_targets(teacher, k)
            assert topk_kl(student, indices, values, rest, mask).item() <= exact + 1e-6, (seed, k)


def test_topk_targets_are_a_distribution_and_fp16_safe():
    teacher = torch.tensor([[[0.0, -1.0, -20.0, -30.0, -40.0]]])  # exp(-20) underflows fp16, its log does not
    values, _, rest = topk_targets(teacher.half(), 3)
    assert values.dtype == rest.dtype == torch.float16
    assert torch.isfinite(values).all() and torch.isfinite(rest).all()
    values32, _, rest32 = topk_targets(teacher, 3)
    assert torch.allclose(values.float(), values32, rtol=1e-3)
    assert rest.float().item() == pytest.approx(rest32.item(), rel=1e-3)
    assert (values32.exp().sum() + rest32.exp()).item() == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- errors


def test_vocab_check_names_both_sizes():
    vocab_check(32000, 32000)
    message = "token-level KD needs one vocabulary: teacher has 50257 tokens, student has 32000"
    with pytest.raises(ConfigError, match=message):
        vocab_check(32000, 50257)
    with pytest.raises(ConfigError, match="teacher has 3 tokens, student has 2"):
        token_kl(torch.zeros(1, 1, 2), torch.zeros(1, 1, 3), torch.ones(1, 1))


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="direction='backward'"):
        token_kl(STUDENT, TEACHER, ALL, direction="backward")
    with pytest.raises(ConfigError, match="beta=1.5"):
        generalized_jsd(STUDENT, TEACHER, ALL, beta=1.5)
    with pytest.raises(ConfigError, match="temperature=0"):
        token_tvd(STUDENT, TEACHER, ALL, temperature=0)
    with pytest.raises(ConfigError, match="k=3"):
        topk_targets(TEACHER, 3)
    with pytest.raises(ValueError, match="mask has shape"):
        token_kl(STUDENT, TEACHER, torch.ones(2, 1))
