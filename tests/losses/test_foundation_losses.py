"""ce, kd, fitnet, at, sp: hand-computed values, known identities, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.losses import build_losses, loss_class
from kdrun.losses.feature.at import ATConfig, attention_map
from kdrun.losses.feature.fitnet import FitNetConfig
from kdrun.losses.relation.sp import SPConfig, similarity_matrix
from kdrun.losses.response.kd import KDConfig, soft_kl
from kdrun.models import ModelOutput, create_model


def output(logits, features=None):
    features = features or [torch.zeros(logits.shape[0], 1, 2, 2)]
    return ModelOutput(logits=logits, features=features, embedding=logits)


def test_soft_kl_matches_hand_computed_value():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    T = 2.0
    # softmax([0.5, 0]) and softmax([0, 0.5]) by hand
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [ps[1], ps[0]]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    assert soft_kl(s, t, T).item() == pytest.approx(T**2 * kl, rel=1e-6)


def test_kd_is_zero_for_equal_logits_and_scales_with_alpha():
    logits = torch.randn(4, 5)
    kd = loss_class("kd")(KDConfig(alpha=0.5), None, None)
    assert kd(output(logits), output(logits.clone()), None)["kd"].item() == pytest.approx(0, abs=1e-6)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    full = loss_class("kd")(KDConfig(alpha=1.0, temperature=3.0), None, None)(output(s), output(t), None)["kd"]
    half = loss_class("kd")(KDConfig(alpha=0.5, temperature=3.0), None, None)(output(s), output(t), None)["kd"]
    assert half.item() == pytest.approx(full.item() / 2, rel=1e-6)
    assert full.item() == pytest.approx(9 * F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1),
                                                     reduction="batchmean").item(), rel=1e-5)


class _Fixed(torch.nn.Module):
    """A 'model' that returns fixed logits plus a learnable bias (for objective tests)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.bias = torch.nn.Parameter(torch.zeros(logits.shape[1]))

    def forward(self, x):
        return output(self.logits + self.bias)


def test_alpha_zero_objective_equals_cross_entropy():
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    batch = Batch(x=torch.zeros(6, 1, 2, 2), y=y, index=torch.arange(6))
    teacher = FrozenTeacher(_Fixed(t), "fixed")
    losses = torch.nn.ModuleDict({"kd": loss_class("kd")(KDConfig(alpha=0.0), None, None)})
    terms, _ = Distiller(_Fixed(s), losses, teacher, ce_weight=1.0 - 0.0)(batch)
    total = sum(terms.values())
    assert total.item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)


@pytest.mark.parametrize("field,value,needle", [("temperature", 0.0, "loss.kd.temperature=0.0 must be > 0"),
                                                ("temperature", -1.0, "loss.kd.temperature"),
                                                ("alpha", 1.5, "loss.kd.alpha=1.5 must be within [0, 1]"),
                                                ("alpha", -0.1, "loss.kd.alpha")])
def test_kd_rejects_bad_values(field, value, needle):
    cfg = KDConfig(**{field: value})
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        loss_class("kd").validate(cfg)


def test_attention_map_by_hand():
    f = torch.zeros(1, 2, 1, 2)
    f[0, 0, 0] = torch.tensor([1.0, 2.0])
    f[0, 1, 0] = torch.tensor([3.0, 0.0])
    q = torch.tensor([(1 + 9) / 2, (4 + 0) / 2])      # channel mean of squares
    assert torch.allclose(attention_map(f), (q / q.norm()).unsqueeze(0))


def test_at_zero_for_same_features_and_pools_cross_sizes():
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    at = loss_class("at")(ATConfig(), output(torch.zeros(2, 3), feats), output(torch.zeros(2, 3), feats))
    assert at(output(torch.zeros(2, 3), feats), output(torch.zeros(2, 3), feats), None)["at"].item() == 0
    teacher = [torch.randn(2, 32, 4, 4), torch.randn(2, 64, 2, 2), torch.randn(2, 64, 1, 1)]
    value = at(output(torch.zeros(2, 3), feats), output(torch.zeros(2, 3), teacher), None)["at"]
    assert value.item() > 0 and torch.isfinite(value)


def test_sp_by_hand_and_scale_invariance():
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    g = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    expected = g / g.norm(dim=1, keepdim=True)
    assert torch.allclose(similarity_matrix(f), expected)
    feats = [torch.randn(4, 3, 2, 2)]
    sp = loss_class("sp")(SPConfig(), output(torch.zeros(4, 2), feats), output(torch.zeros(4, 2), feats))
    scaled = [feats[0] * 7.0]
    assert sp(output(torch.zeros(4, 2), feats), output(torch.zeros(4, 2), scaled), None)["sp"].item() == pytest.approx(0, abs=1e-6)
    other = [torch.randn(4, 9, 1, 1)]
    # gamma * ||G_s - G_t||^2 / b^2 by hand
    gs, gt = similarity_matrix(feats[0]), similarity_matrix(other[0])
    want = 3000.0 * (gs - gt).pow(2).sum() / 16
    got = sp(output(torch.zeros(4, 2), feats), output(torch.zeros(4, 2), other), None)["sp"]
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_fitnet_connector_is_sized_by_the_probe_and_gets_gradients():
    student = create_model("resnet8", num_classes=10, in_chans=1)
    teacher = create_model("mobilenet", num_classes=10, in_chans=1).eval()
    x = torch.randn(4, 1, 32, 32)
    s_out, t_out = student(x), teacher(x)
    losses = build_losses({"fitnet": FitNetConfig(hint_in_main=True)}, s_out, t_out)
    value = losses["fitnet"](s_out, t_out.detach(), None)["fitnet"]
    value.backward()
    assert losses["fitnet"].regressor.proj[0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_bad_stage_index_names_the_key():
    feats = [torch.randn(2, 4, 4, 4)]
    with pytest.raises(ConfigError, match=r"loss.fitnet.student_stage=\[5\]"):
        loss_class("fitnet")(FitNetConfig(student_stage=5), output(torch.zeros(2, 2), feats),
                             output(torch.zeros(2, 2), feats))
