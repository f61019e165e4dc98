"""cc, rkd, pkt, fsp, irg, ickd, kdsvd: hand-computed values (numpy / loops), known
identities, and validate() messages naming the key. crd has its own file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdrun.config.errors import ConfigError
from kdrun.losses import loss_class
from kdrun.losses.relation.cc import CCConfig, correlation_matrix
from kdrun.losses.relation.fsp import FSPConfig
from kdrun.losses.relation.ickd import ICKDConfig
from kdrun.losses.relation.irg import IRGConfig
from kdrun.losses.relation.kdsvd import KDSVDConfig
from kdrun.losses.relation.pkt import PKTConfig
from kdrun.losses.relation.rkd import RKDConfig
from kdrun.losses.relation.truncated_svd import leading_right_singular_vectors
from kdrun.models import ModelOutput


def out(embedding=None, features=None, logits=None):
    b = (embedding if embedding is not None else features[0]).shape[0]
    logits = logits if logits is not None else torch.zeros(b, 3)
    features = features or [torch.zeros(b, 1, 2, 2)]
    embedding = embedding if embedding is not None else torch.zeros(b, 2)
    return ModelOutput(logits=logits, features=features, embedding=embedding)


def build(name, cfg, s, t):
    loss_class(name).validate(cfg)
    return loss_class(name)(cfg, s, t)


def unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ---------------------------------------------------------------- cc
def test_cc_kernel_and_loss_by_hand():
    s = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    t = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, -1.0]])
    gamma = 0.4

    def kernel(f):
        sim = unit_rows(f) @ unit_rows(f).T
        return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim**p
                   for p in range(3))

    want = 0.02 * ((kernel(s) - kernel(t)) ** 2).sum() / 9
    cc = build("cc", CCConfig(feat_dim=0), out(torch.zeros(3, 2)), out(torch.zeros(3, 2)))
    got = cc(out(torch.tensor(s, dtype=torch.float32)), out(torch.tensor(t, dtype=torch.float32)), None)
    assert got["cc"].item() == pytest.approx(want, rel=1e-5)


def test_cc_taylor_kernel_tends_to_the_gaussian_rbf():
    f = torch.randn(5, 4, dtype=torch.float64)
    unit = f / f.norm(dim=1, keepdim=True)
    exact = torch.exp(-0.4 * torch.cdist(unit, unit).pow(2))
    assert torch.allclose(correlation_matrix(f, 0.4, 12), exact, atol=1e-9)


def test_cc_is_zero_for_equal_embeddings_through_equal_heads():
    e = torch.randn(6, 8)
    cc = build("cc", CCConfig(), out(e), out(e))
    cc.embed_t.load_state_dict(cc.embed_s.state_dict())
    assert cc(out(e), out(e.clone()), None)["cc"].item() == pytest.approx(0, abs=1e-9)


# ---------------------------------------------------------------- rkd
def huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d**2, d - 0.5).mean()


def rkd_by_hand(e):
    n = len(e)
    d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
    d = d / (d.sum() / (n * (n - 1)))
    ang = np.zeros((n, n, n))
    for j in range(n):
        for i in range(n):
            for k in range(n):
                if i != j and k != j:
                    u, v = e[i] - e[j], e[k] - e[j]
                    ang[j, i, k] = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    return d, ang


def test_rkd_distance_and_angle_by_hand():
    s = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    t = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])
    (ds, a_s), (dt, a_t) = rkd_by_hand(s), rkd_by_hand(t)
    rkd = build("rkd", RKDConfig(), out(torch.zeros(4, 2)), out(torch.zeros(4, 2)))
    got = rkd(out(torch.tensor(s, dtype=torch.float32)), out(torch.tensor(t, dtype=torch.float32)), None)
    assert got["rkd_distance"].item() == pytest.approx(25 * huber(ds, dt), rel=1e-4)
    assert got["rkd_angle"].item() == pytest.approx(50 * huber(a_s, a_t), rel=1e-4)


def test_rkd_is_zero_under_scaling_and_drops_zero_weighted_terms():
    e = torch.randn(5, 3)
    rkd = build("rkd", RKDConfig(), out(e), out(e))
    terms = rkd(out(e), out(e * 3.0), None)          # distances are normalised by their mean
    assert all(v.item() == pytest.approx(0, abs=1e-5) for v in terms.values())
    only_angle = build("rkd", RKDConfig(lambda_distance=0), out(e), out(e))
    assert set(only_angle(out(e), out(e), None)) == {"rkd_angle"}


# ---------------------------------------------------------------- pkt
def pkt_by_hand(s, t, drop_self_pairs):
    """The kernel, normaliser and KL as loops; the mean over all b^2 entries."""
    b = len(s)

    def cond(f):
        k = (unit_rows(f) @ unit_rows(f).T + 1) / 2
        if drop_self_pairs:
            np.fill_diagonal(k, 0)
        return k / k.sum(1, keepdims=True)

    ps, pt = cond(s), cond(t)
    return sum(pt[i, j] * math.log(pt[i, j] / ps[i, j]) for i in range(b) for j in range(b)
               if not (drop_self_pairs and i == j)) / b**2


PKT_S = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
PKT_T = np.array([[0.0, 1.0], [1.0, 0.2], [-1.0, -1.0]])


def pkt_value(cfg, s, t):
    pkt = build("pkt", cfg, out(torch.zeros(len(s), s.shape[1])), out(torch.zeros(len(t), t.shape[1])))
    got = pkt(out(torch.tensor(s, dtype=torch.float32)), out(torch.tensor(t, dtype=torch.float32)), None)
    return got["pkt"].item()


def test_pkt_default_keeps_self_pairs_as_the_authors_code():
    # 2 samples: student orthogonal (cos 0 -> K 1/2 off the diagonal, 1 on it), teacher parallel
    # (K = 1 everywhere). Kept: p_s rows (2/3, 1/3), p_t rows (1/2, 1/2), so each row's KL is
    # 1/2 ln(3/4) + 1/2 ln(3/2) = 1/2 ln(9/8); two rows over b^2 = 4 entries: ln(9/8) / 4.
    s, t = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [2.0, 0.0]])
    assert PKTConfig().self_pairs == "keep"
    assert pkt_value(PKTConfig(), s, t) == pytest.approx(30000 * math.log(9 / 8) / 4, rel=1e-4)
    # without the self-pairs both rows are (0, 1) for both models: nothing to transfer
    assert pkt_value(PKTConfig(self_pairs="drop"), s, t) == pytest.approx(0, abs=1e-2)
    assert pkt_value(PKTConfig(), PKT_S, PKT_T) == pytest.approx(30000 * pkt_by_hand(PKT_S, PKT_T, False), rel=1e-4)


def test_pkt_drop_excludes_self_pairs_as_the_paper():
    want = 30000 * pkt_by_hand(PKT_S, PKT_T, True)
    assert pkt_value(PKTConfig(self_pairs="drop"), PKT_S, PKT_T) == pytest.approx(want, rel=1e-4)
    assert want != pytest.approx(30000 * pkt_by_hand(PKT_S, PKT_T, False), rel=1e-2)


@pytest.mark.parametrize("self_pairs", ["keep", "drop"])
def test_pkt_is_zero_for_the_same_embeddings_up_to_scale(self_pairs):
    torch.manual_seed(0)
    e = torch.randn(4, 5)
    pkt = build("pkt", PKTConfig(self_pairs=self_pairs), out(e), out(e))
    assert pkt(out(e), out(e), None)["pkt"].item() == pytest.approx(0, abs=1e-2)
    assert pkt(out(e), out(2 * e), None)["pkt"].item() == pytest.approx(0, abs=1e-2)
    assert pkt(out(e), out(torch.randn(4, 5)), None)["pkt"].item() > 1


# ---------------------------------------------------------------- fsp
def fsp_by_hand(a, b):
    """a: (C1, H, W), b: (C2, H, W) -> (C1, C2)."""
    h, w = a.shape[1:]
    return np.array([[sum(a[i, x, y] * b[j, x, y] for x in range(h) for y in range(w)) / (h * w)
                      for j in range(b.shape[0])] for i in range(a.shape[0])])


def test_fsp_by_hand_with_pooling_to_the_smaller_map():
    rng = np.random.default_rng(0)
    s1, s2 = rng.normal(size=(2, 4, 4)), rng.normal(size=(3, 2, 2))
    t1, t2 = rng.normal(size=(2, 4, 4)), rng.normal(size=(3, 2, 2))
    pool = lambda a: a.reshape(a.shape[0], 2, 2, 2, 2).mean(axis=(2, 4))  # noqa: E731  4x4 -> 2x2
    want = ((fsp_by_hand(pool(s1), s2) - fsp_by_hand(pool(t1), t2)) ** 2).mean()
    as_t = lambda *a: [torch.tensor(x[None], dtype=torch.float32) for x in a]  # noqa: E731
    cfg = FSPConfig(student_stages=[0, 1], teacher_stages=[0, 1], keep_in_main=True)
    fsp = build("fsp", cfg, out(features=as_t(s1, s2)), out(features=as_t(t1, t2)))
    got = fsp(out(features=as_t(s1, s2)), out(features=as_t(t1, t2)), None)["fsp"]
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert all(isinstance(a, torch.nn.Identity) for a in fsp.adapters)  # equal widths: no connector
    same = fsp(out(features=as_t(s1, s2)), out(features=as_t(s1, s2)), None)["fsp"]
    assert same.item() == pytest.approx(0, abs=1e-9)


def test_fsp_only_trains_in_the_init_stage_unless_kept():
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    cfg = FSPConfig(student_stages=[0, 1], teacher_stages=[0, 1], init_epochs=3)
    fsp = build("fsp", cfg, out(features=feats), out(features=feats))
    assert fsp.pretrain_epochs == 3
    assert fsp(out(features=feats), out(features=feats), None) == {}
    assert set(fsp.pretrain_terms(out(features=feats), out(features=feats), None)) == {"fsp"}


# ---------------------------------------------------------------- ickd
def test_ickd_by_hand():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))

    def icc(f):
        g = np.einsum("bcx,bdx->bcd", f.reshape(2, 3, 4), f.reshape(2, 3, 4))
        return g / np.linalg.norm(g, axis=2, keepdims=True)

    as_t = lambda a: [torch.tensor(a, dtype=torch.float32)]  # noqa: E731
    ickd = build("ickd", ICKDConfig(), out(features=as_t(s)), out(features=as_t(t)))
    ickd.connector = torch.nn.Identity()           # the connector is tested with real models
    got = ickd(out(features=as_t(s)), out(features=as_t(t)), None)["ickd"]
    assert got.item() == pytest.approx(2.5 * ((icc(s) - icc(t)) ** 2).sum() / (3 * 2), rel=1e-5)
    same = ickd(out(features=as_t(s)), out(features=as_t(s)), None)["ickd"]
    assert same.item() == pytest.approx(0, abs=1e-9)


# ---------------------------------------------------------------- irg
def test_irg_terms_by_hand():
    rng = np.random.default_rng(2)
    b = 4
    s = [rng.normal(size=(b, 2, 4, 4)), rng.normal(size=(b, 4, 2, 2))]
    t = [rng.normal(size=(b, 3, 4, 4)), rng.normal(size=(b, 6, 2, 2))]
    zs, zt = rng.normal(size=(b, 3)), rng.normal(size=(b, 3))
    es, et = rng.normal(size=(b, 5)), rng.normal(size=(b, 7))

    def edge(x):
        f = x.reshape(b, -1)
        d = np.array([[((f[i] - f[j]) ** 2).sum() for j in range(b)] for i in range(b)])
        return d / d.max()

    def move(a, c):  # pool the 4x4 map to 2x2; average channel pairs of the wider map
        a = a.reshape(b, a.shape[1], 2, 2, 2, 2).mean(axis=(3, 5))
        c = (c[:, 0::2] + c[:, 1::2]) / 2
        d = ((a - c) ** 2).reshape(b, -1).sum(1)
        return d / d.max()

    mse = lambda x, y: ((x - y) ** 2).mean()  # noqa: E731
    want_edge = (mse(edge(s[0]), edge(t[0])) + mse(edge(s[1]), edge(t[1])) + mse(edge(es), edge(et))) / 3
    tt = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    so = ModelOutput(tt(zs), [tt(x) for x in s], tt(es))
    to = ModelOutput(tt(zt), [tt(x) for x in t], tt(et))
    got = build("irg", IRGConfig(), so, to)(so, to, None)
    assert got["irg_vertex"].item() == pytest.approx(0.1 * mse(zs, zt), rel=1e-5)
    assert got["irg_edge"].item() == pytest.approx(5 * want_edge, rel=1e-4)
    assert got["irg_transform"].item() == pytest.approx(5 * mse(move(*s), move(*t)), rel=1e-4)
    same = build("irg", IRGConfig(), so, so)(so, so, None)
    assert all(v.item() == pytest.approx(0, abs=1e-6) for v in same.values())


# ---------------------------------------------------------------- kdsvd
def rank_one(u, c):
    """A (1, C, H, W) map whose (HW x C) matrix is u c^T, so its right singular vector is c."""
    return torch.tensor(np.outer(u, c).T.reshape(1, len(c), 2, 2), dtype=torch.float32)


def test_kdsvd_by_hand_on_rank_one_maps():
    u1, u2 = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.3, -1.0, 2.0, 1.0])
    c1 = np.array([1.0, -1.0])                  # symmetric entries: the loss is sign-free
    c2, d2 = np.array([3.0, 1.0, 2.0]), np.array([3.0, 1.5, 2.0])
    s = [rank_one(u1, c1), rank_one(u2, c2)]
    t = [rank_one(2 * u1, c1), rank_one(u2, d2)]
    y = np.array([1.0, -1.0]) / math.sqrt(2)

    def rbf(v):
        return np.exp(-(v[:, None] - y[None, :]) ** 2 / 8)

    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    want = 0.5 * ((rbf(unit(c2)) - rbf(unit(d2))) ** 2).sum()
    cfg = KDSVDConfig(student_stages=[0, 1], teacher_stages=[0, 1])
    kdsvd = build("kdsvd", cfg, out(features=s), out(features=t))
    assert kdsvd(out(features=s), out(features=t), None)["kdsvd"].item() == pytest.approx(want, rel=1e-4)
    assert kdsvd(out(features=s), out(features=s), None)["kdsvd"].item() == pytest.approx(0, abs=1e-9)


def test_truncated_svd_gradient_matches_torch_and_survives_dead_channels():
    x = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, 2, dtype=torch.float64)
    ours, = torch.autograd.grad((leading_right_singular_vectors(x, 2) ** 2 * w).sum(), x)
    v = torch.linalg.svd(x, full_matrices=False)[2].transpose(-2, -1)[..., :2]
    theirs, = torch.autograd.grad((v**2 * w).sum(), x)
    assert torch.allclose(ours, theirs, atol=1e-10)
    dead = torch.relu(torch.randn(2, 16, 8))
    dead[:, :, 3:] = 0                                      # repeated zero singular values
    dead.requires_grad_(True)
    (leading_right_singular_vectors(dead, 2) ** 2 * torch.arange(8.0)[:, None]).sum().backward()
    assert torch.isfinite(dead.grad).all()


def test_kdsvd_num_vectors_beyond_the_rank_names_the_key():
    feats = [torch.randn(2, 4, 1, 1), torch.randn(2, 4, 1, 1)]
    with pytest.raises(ConfigError, match="loss.kdsvd.num_vectors=2"):
        build("kdsvd", KDSVDConfig(num_vectors=2, student_stages=[0, 1], teacher_stages=[0, 1]),
              out(features=feats), out(features=feats))


# ---------------------------------------------------------------- validate
@pytest.mark.parametrize("name,cfg,needle", [
    ("cc", CCConfig(beta=0), "loss.cc.beta=0"),
    ("cc", CCConfig(gamma=-1), "loss.cc.gamma"),
    ("cc", CCConfig(p_order=-1), "loss.cc.p_order=-1"),
    ("cc", CCConfig(feat_dim=-2), "loss.cc.feat_dim"),
    ("rkd", RKDConfig(lambda_distance=-1), "loss.rkd.lambda_distance=-1"),
    ("rkd", RKDConfig(lambda_distance=0, lambda_angle=0), "loss.rkd.lambda_distance"),
    ("pkt", PKTConfig(weight=0), "loss.pkt.weight=0"),
    ("pkt", PKTConfig(self_pairs="exclude"), "loss.pkt.self_pairs=exclude: use keep"),
    ("fsp", FSPConfig(weight=-1), "loss.fsp.weight"),
    ("fsp", FSPConfig(init_epochs=-1), "loss.fsp.init_epochs=-1"),
    ("fsp", FSPConfig(init_epochs=0), "loss.fsp.init_epochs=0"),
    ("fsp", FSPConfig(student_stages=[-1], teacher_stages=[-1]), "loss.fsp.student_stages"),
    ("fsp", FSPConfig(student_stages=[1, 2], teacher_stages=[1]), "loss.fsp.student_stages"),
    ("ickd", ICKDConfig(beta=0), "loss.ickd.beta=0"),
    ("irg", IRGConfig(lambda_edge=-1), "loss.irg.lambda_edge=-1"),
    ("irg", IRGConfig(lambda_vertex=0, lambda_edge=0, lambda_transform=0), "loss.irg"),
    ("irg", IRGConfig(student_stages=[-1], teacher_stages=[-1]), "loss.irg.lambda_transform"),
    ("kdsvd", KDSVDConfig(num_vectors=0), "loss.kdsvd.num_vectors=0"),
    ("kdsvd", KDSVDConfig(weight=0), "loss.kdsvd.weight"),
    ("kdsvd", KDSVDConfig(student_stages=[-1], teacher_stages=[-1]), "loss.kdsvd.student_stages"),
])
def test_validate_names_the_key(name, cfg, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        loss_class(name).validate(cfg)


@pytest.mark.parametrize("name,cfg", [("fsp", FSPConfig(student_stages=[0, 9], teacher_stages=[0, 1])),
                                      ("irg", IRGConfig(student_stages=[0, 9], teacher_stages=[0, 1])),
                                      ("ickd", ICKDConfig(student_stage=9))])
def test_missing_stage_names_the_key(name, cfg):
    feats = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    with pytest.raises(ConfigError, match=f"loss.{name}.student_stage"):
        loss_class(name)(cfg, out(features=feats), out(features=feats))
