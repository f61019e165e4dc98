"""kd divergences, dkd, dist, lskd, ls: hand-computed values, identities, gradients, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.losses import build_losses, ce_weight, check_outputs, loss_class, validate_losses
from kdrun.losses.response.dist import DISTConfig, dist_terms
from kdrun.losses.response.dkd import DKDConfig, dkd_terms
from kdrun.losses.response.kd import DIVERGENCES, KDConfig, divergence, soft_divergence
from kdrun.losses.response.ls import LSConfig
from kdrun.losses.response.lskd import LSKDConfig
from kdrun.models import ModelOutput, create_model

S = torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.5, 2.0, 0.0, -0.5], [-1.0, 0.3, 0.8, 0.1]])
T_ = torch.tensor([[0.0, 1.0, 0.0, 2.0], [1.0, 1.0, -2.0, 0.0], [0.2, -0.4, 1.5, 0.0]])
Y = torch.tensor([0, 1, 2])


def output(logits):
    return ModelOutput(logits=logits, features=[torch.zeros(logits.shape[0], 1, 2, 2)], embedding=logits)


def batch(y):
    return Batch(x=torch.zeros(len(y), 1, 2, 2), y=y, index=torch.arange(len(y)))


def softmax_np(z, temperature=1.0):
    z = np.asarray(z, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kl_rows(p, q):
    return (p * np.log(p / q)).sum(axis=1)


class Fixed(torch.nn.Module):
    """A 'model' with fixed logits plus a learnable bias."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.bias = torch.nn.Parameter(torch.zeros(logits.shape[1]))

    def forward(self, x):
        return output(self.logits + self.bias)


def terms(name, cfg, s, t, y=Y):
    t = None if t is None else output(t)
    return loss_class(name)(cfg, output(s), t)(output(s), t, batch(y))


# ---------------------------------------------------------------- kd divergences

@pytest.mark.parametrize("kind", DIVERGENCES)
def test_kd_divergence_matches_its_definition(kind):
    temp = 2.0
    ps, pt = softmax_np(S, temp), softmax_np(T_, temp)
    m = (ps + pt) / 2
    by_hand = {"forward_kl": kl_rows(pt, ps), "reverse_kl": kl_rows(ps, pt),
               "js": 0.5 * kl_rows(pt, m) + 0.5 * kl_rows(ps, m),
               "tvd": 0.5 * np.abs(ps - pt).sum(axis=1)}[kind].mean()
    factor = temp if kind == "tvd" else temp**2          # T^2 on KL-type, T on tvd
    got = terms("kd", KDConfig(alpha=0.5, temperature=temp, divergence=kind), S, T_)["kd"]
    assert got.item() == pytest.approx(0.5 * factor * by_hand, rel=1e-5)


def test_kd_divergence_identities():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5) * 3, torch.randn(6, 5) * 3
    for kind in DIVERGENCES:  # all zero at equality
        assert soft_divergence(s, s.clone(), 4.0, kind).item() == pytest.approx(0, abs=1e-6)
    log_s, log_t = F.log_softmax(s, 1), F.log_softmax(t, 1)
    js = divergence(log_s, log_t, "js").item()
    assert js == pytest.approx(divergence(log_t, log_s, "js").item(), rel=1e-6)   # symmetric
    forward, reverse = (divergence(log_s, log_t, k).item() for k in ("forward_kl", "reverse_kl"))
    assert forward != pytest.approx(reverse)                                          # KL is not
    tvd = divergence(log_s, log_t, "tvd").item()
    assert 0 < tvd <= 1
    apart = F.log_softmax(torch.tensor([[60.0, 0.0]]), 1), F.log_softmax(torch.tensor([[0.0, 60.0]]), 1)
    assert divergence(*apart, "tvd").item() == pytest.approx(1.0, abs=1e-6)   # the upper end, disjoint
    assert divergence(*apart, "js").item() == pytest.approx(math.log(2), abs=1e-6)  # JS <= log 2
    assert soft_divergence(s, t, 4.0, "tvd").item() == pytest.approx(4.0 * divergence(
        F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), "tvd").item(), rel=1e-6)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_kd_scaling_keeps_gradients_comparable_across_temperatures(kind):
    # why T^2 on the KL-type divergences and T on tvd: the scaled gradient barely moves with T
    torch.manual_seed(0)
    s, t = torch.randn(64, 10), torch.randn(64, 10)
    norms = []
    for temp in (8.0, 16.0):
        z = s.clone().requires_grad_(True)
        soft_divergence(z, t, temp, kind).backward()
        norms.append(z.grad.norm().item())
    assert norms[1] == pytest.approx(norms[0], rel=0.1)


def test_kd_default_is_hinton():
    assert KDConfig().divergence == "forward_kl"
    want = 16 * F.kl_div(F.log_softmax(S / 4, 1), F.softmax(T_ / 4, 1), reduction="batchmean")
    assert terms("kd", KDConfig(alpha=1.0), S, T_)["kd"].item() == pytest.approx(want.item(), rel=1e-5)


# ---------------------------------------------------------------- dkd

def test_dkd_matches_hand_computed_tckd_and_nckd():
    temp = 2.0
    ps, pt = softmax_np(S, temp), softmax_np(T_, temp)
    y = Y.numpy()
    rows = np.arange(len(y))
    b_s = np.stack([ps[rows, y], 1 - ps[rows, y]], 1)
    b_t = np.stack([pt[rows, y], 1 - pt[rows, y]], 1)
    keep = np.ones_like(ps, dtype=bool)
    keep[rows, y] = False
    hat_s = ps[keep].reshape(3, 3) / (1 - ps[rows, y])[:, None]
    hat_t = pt[keep].reshape(3, 3) / (1 - pt[rows, y])[:, None]
    tckd, nckd = kl_rows(b_t, b_s).mean() * temp**2, kl_rows(hat_t, hat_s).mean() * temp**2
    got = terms("dkd", DKDConfig(alpha=1.5, beta=8.0, temperature=temp), S, T_)
    assert set(got) == {"dkd_tckd", "dkd_nckd"}
    assert got["dkd_tckd"].item() == pytest.approx(1.5 * tckd, rel=1e-5)
    assert got["dkd_nckd"].item() == pytest.approx(8.0 * nckd, rel=1e-5)


def test_dkd_reformulates_kd_and_vanishes_at_equality():
    # the paper's Eq. 1: KD = TCKD + (1 - p_t^target) * NCKD, per sample
    for i in range(3):
        s, t, y = S[i:i + 1], T_[i:i + 1], Y[i:i + 1]
        tckd, nckd = dkd_terms(s, t, y, 4.0)
        p_target = F.softmax(t / 4, 1)[0, y].item()
        kd = soft_divergence(s, t, 4.0)
        assert kd.item() == pytest.approx((tckd + (1 - p_target) * nckd).item(), rel=1e-5)
    tckd, nckd = dkd_terms(S, S.clone(), Y, 4.0)
    assert tckd.item() == pytest.approx(0, abs=1e-6) and nckd.item() == pytest.approx(0, abs=1e-6)


def test_dkd_defaults_and_warmup():
    cfg = DKDConfig()
    assert (cfg.alpha, cfg.beta, cfg.temperature, cfg.ce_weight, cfg.warmup_epochs) == (1.0, 8.0, 4.0, 1.0, 20)
    losses = build_losses({"dkd": cfg}, output(S), output(T_))
    objective = Distiller(Fixed(S), losses, FrozenTeacher(Fixed(T_), "fixed"), ce_weight({"dkd": cfg}))
    objective.set_epoch(19)                       # the 20th epoch: warm-up over, full strength
    full = objective(batch(Y))[0]
    tckd, nckd = dkd_terms(S, T_, Y, 4.0)
    assert full["dkd_nckd"].item() == pytest.approx(8.0 * nckd.item(), rel=1e-6)
    objective.set_epoch(0)                        # the first epoch: 1/20 of it
    first = objective(batch(Y))[0]
    assert first["dkd_tckd"].item() == pytest.approx(tckd.item() / 20, rel=1e-6)
    assert first["ce"].item() == pytest.approx(F.cross_entropy(S, Y).item(), rel=1e-6)


# ---------------------------------------------------------------- dist

def test_dist_matches_hand_computed_pearson_relations():
    temp = 2.0
    ys, yt = softmax_np(S, temp), softmax_np(T_, temp)
    inter = 1 - np.mean([np.corrcoef(ys[i], yt[i])[0, 1] for i in range(ys.shape[0])])
    intra = 1 - np.mean([np.corrcoef(ys[:, j], yt[:, j])[0, 1] for j in range(ys.shape[1])])
    got = terms("dist", DISTConfig(beta=1.0, gamma=3.0, temperature=temp), S, T_)
    assert set(got) == {"dist_inter", "dist_intra"}
    assert got["dist_inter"].item() == pytest.approx(temp**2 * inter, rel=1e-5)
    assert got["dist_intra"].item() == pytest.approx(3.0 * temp**2 * intra, rel=1e-5)


def test_dist_vanishes_at_equality_and_is_bounded():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10) * 3, torch.randn(8, 10) * 3
    inter, intra = dist_terms(s, s.clone(), 1.0)
    assert inter.item() == pytest.approx(0, abs=1e-5) and intra.item() == pytest.approx(0, abs=1e-5)
    inter, intra = dist_terms(s, t, 1.0)  # 1 - rho lies in [0, 2]
    assert 0 < inter.item() <= 2 and 0 < intra.item() <= 2


# ---------------------------------------------------------------- lskd

def zscore(z, ddof):
    z = np.asarray(z, dtype=np.float64)
    return (z - z.mean(1, keepdims=True)) / z.std(1, ddof=ddof, keepdims=True)


@pytest.mark.parametrize("std,ddof", [("sample", 1), ("population", 0)])
def test_lskd_matches_hand_computed_value(std, ddof):
    temp = 2.0
    ps, pt = softmax_np(zscore(S, ddof), temp), softmax_np(zscore(T_, ddof), temp)
    want = 9.0 * temp**2 * kl_rows(pt, ps).mean()
    assert terms("lskd", LSKDConfig(std=std), S, T_)["lskd"].item() == pytest.approx(want, rel=1e-5)


def test_lskd_default_is_the_authors_sample_std_by_hand():
    """Sun et al.'s code (and torchdistill's LogitStdKDLoss) divide by torch.std, 1/(K-1)."""
    s = torch.tensor([[0.0, 1.0, 2.0], [4.0, 4.0, 1.0]])
    t = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 4.0]])
    # sample z-scores worked out by hand: [0,1,2] -> [-1,0,1]; [3,0,0] -> [2,-1,-1]/sqrt(3)
    # ([2,-1,-1] centred, variance 6/2); [4,4,1] -> [1,1,-2]/sqrt(3); [0,2,4] -> [-1,0,1]
    r3 = math.sqrt(3)
    zs, zt = [[-1, 0, 1], [1 / r3, 1 / r3, -2 / r3]], [[2 / r3, -1 / r3, -1 / r3], [-1, 0, 1]]

    def softmax(row, temp=2.0):
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    kl = [sum(p * math.log(p / q) for p, q in zip(softmax(a), softmax(b))) for a, b in zip(zt, zs)]
    want = 9.0 * 2.0**2 * sum(kl) / 2
    assert LSKDConfig().std == "sample"
    assert terms("lskd", LSKDConfig(), s, t, torch.tensor([0, 1]))["lskd"].item() == pytest.approx(want, rel=1e-5)
    # the population form is the sample form at a base temperature smaller by sqrt((K-1)/K)
    k, tau = 3, 2.0
    slower = tau * math.sqrt((k - 1) / k)
    sample = terms("lskd", LSKDConfig(temperature=slower), s, t, torch.tensor([0, 1]))["lskd"].item()
    population = terms("lskd", LSKDConfig(std="population"), s, t, torch.tensor([0, 1]))["lskd"].item()
    assert population == pytest.approx(sample * tau**2 / slower**2, rel=1e-5)
    assert population != pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("std", ["sample", "population"])
def test_lskd_is_zero_for_identical_logits(std):
    assert terms("lskd", LSKDConfig(std=std), S, S)["lskd"].item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("std", ["sample", "population"])
def test_lskd_ignores_logit_scale_and_shift(std):
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    scale, shift = torch.tensor([[0.5], [3.0], [10.0], [1.0]]), torch.tensor([[2.0], [-1.0], [0.0], [5.0]])
    lskd = loss_class("lskd")(LSKDConfig(std=std), None, None)
    base = lskd(output(s), output(t), None)["lskd"].item()
    assert lskd(output(s * scale + shift), output(t), None)["lskd"].item() == pytest.approx(base, rel=1e-4)
    # zero when the student's logits are any affine copy of the teacher's (plain kd is not)
    assert lskd(output(t * scale + shift), output(t), None)["lskd"].item() == pytest.approx(0, abs=1e-5)
    assert soft_divergence(t * scale + shift, t, 2.0).item() > 1e-3


# ---------------------------------------------------------------- ls

@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_ce_plus_ls_is_label_smoothed_cross_entropy(eps):
    torch.manual_seed(0)
    logits, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    cfg = LSConfig(epsilon=eps)
    ls = loss_class("ls")(cfg, output(logits), None)
    total = ce_weight({"ls": cfg}) * F.cross_entropy(logits, y) + ls(output(logits), None, batch(y))["ls"]
    assert total.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=eps).item(), rel=1e-6)


def test_ls_term_by_hand_and_through_the_engine():
    logp = np.log(softmax_np(S))
    want = 0.1 * (-logp.mean(axis=1)).mean()           # epsilon * CE(uniform, p_s)
    assert terms("ls", LSConfig(), S, None)["ls"].item() == pytest.approx(want, rel=1e-6)
    assert not loss_class("ls").needs_teacher

    losses = build_losses({"ls": LSConfig()}, output(S), None)
    objective = Distiller(Fixed(S), losses, None, ce_weight({"ls": LSConfig()}))
    got, _ = objective(batch(Y))
    smoothed = F.cross_entropy(S, Y, label_smoothing=0.1)
    assert sum(got.values()).item() == pytest.approx(smoothed.item(), rel=1e-6)


# ---------------------------------------------------------------- config, CE weight, validation

def test_every_method_composes_and_ce_weight_is_the_product(compose_cfg):
    for name in ("dkd", "dist", "lskd", "ls"):
        cfg = compose_cfg([f"loss={name}"])
        validate_losses(cfg.loss)
        assert loss_class(name).knowledge == ("none" if name == "ls" else "response")
    cfg = compose_cfg(["loss=[dkd,kd]"])
    assert cfg.loss.dkd.warmup_epochs == 20
    assert ce_weight(cfg.loss) == pytest.approx(1.0 * (1 - 0.9))
    assert ce_weight(compose_cfg(["loss=[ls,kd]"]).loss) == pytest.approx((1 - 0.1) * (1 - 0.9))
    assert ce_weight(compose_cfg(["loss=[ls,kd]", "loss.ls.epsilon=0.2", "loss.kd.alpha=0.5"]).loss) \
        == pytest.approx(0.8 * 0.5)
    assert ce_weight(compose_cfg(["loss=[lskd,dist]"]).loss) == pytest.approx(0.1 * 1.0)


@pytest.mark.parametrize("name,cfg,needle", [
    ("kd", KDConfig(divergence="kl"), "loss.kd.divergence=kl: unknown divergence"),
    ("dkd", DKDConfig(temperature=0.0), r"loss.dkd.temperature=0.0 must be > 0"),
    ("dkd", DKDConfig(beta=-1.0), r"loss.dkd.beta=-1.0 must be >= 0"),
    ("dkd", DKDConfig(warmup_epochs=-1), r"loss.dkd.warmup_epochs=-1 must be >= 0"),
    ("dist", DISTConfig(gamma=-2.0), r"loss.dist.gamma=-2.0 must be >= 0"),
    ("dist", DISTConfig(temperature=-1.0), r"loss.dist.temperature=-1.0 must be > 0"),
    ("lskd", LSKDConfig(temperature=0.0), r"loss.lskd.temperature=0.0 must be > 0"),
    ("lskd", LSKDConfig(ce_weight=-0.1), r"loss.lskd.ce_weight=-0.1 must be >= 0"),
    ("lskd", LSKDConfig(std="bessel"), r"loss.lskd.std=bessel: use sample"),
    ("ls", LSConfig(epsilon=1.0), r"loss.ls.epsilon=1.0 must be within \[0, 1\)"),
    ("ls", LSConfig(epsilon=-0.1), r"loss.ls.epsilon=-0.1"),
])
def test_validate_rejects_bad_values_naming_the_key(name, cfg, needle):
    with pytest.raises(ConfigError, match=needle):
        loss_class(name).validate(cfg)


# ---------------------------------------------------------------- real models, gradients

PAIRS = [("wrn_16_2", "shufflenetv2"), ("mobilenet", "resnet8")]   # zoo -> zoo, timm -> zoo
METHODS = [("kd", KDConfig(divergence="js")), ("kd", KDConfig(divergence="tvd")), ("dkd", DKDConfig()),
           ("dist", DISTConfig()), ("lskd", LSKDConfig())]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    names = {n for pair in PAIRS for n in pair}
    return {n: create_model(n, num_classes=10, in_chans=1) for n in names}


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}->{p[1]}")
@pytest.mark.parametrize("name,cfg", METHODS, ids=["kd-js", "kd-tvd", "dkd", "dist", "lskd"])
def test_gradients_reach_only_the_student(models, pair, name, cfg):
    teacher_model, student = models[pair[0]], models[pair[1]]
    student.zero_grad(set_to_none=True)
    x, y = torch.randn(6, 1, 32, 32), torch.arange(6) % 10
    with torch.no_grad():
        probe_s, probe_t = student.eval()(x[:2]), teacher_model.eval()(x[:2])
    check_outputs({name: cfg}, {"student": (pair[1], probe_s), "teacher": (pair[0], probe_t)})
    teacher = FrozenTeacher(teacher_model, pair[0])
    objective = Distiller(student.train(), build_losses({name: cfg}, probe_s, probe_t), teacher,
                          ce_weight({name: cfg}))
    got, _ = objective(Batch(x=x, y=y, index=torch.arange(6)))
    assert all(torch.isfinite(v) and v.item() > 0 for v in got.values()), got
    sum(got.values()).backward()
    assert all(p.grad is None for p in teacher_model.parameters())
    assert all(not p.requires_grad for p in teacher_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
