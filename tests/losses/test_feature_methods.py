"""Feature methods (fitnet's hint stage, ab, ft, nst, vid, ofd, reviewkd, simkd, srd):
formulas on fixed tensors against values worked out by hand, known minima, gradient
flow, real architecture pairs and config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.distiller import Distiller, PretrainStage
from kdrun.losses import LossContext, build_losses, ce_weight, loss_class
from kdrun.losses.feature.ab import boundary_loss
from kdrun.losses.feature.ft import factor_loss
from kdrun.losses.feature.nst import selectivity_mmd
from kdrun.losses.feature.ofd import negative_mean, partial_l2
from kdrun.losses.feature.reviewkd import hierarchical_context_loss
from kdrun.losses.feature.simkd import final_map
from kdrun.losses.feature.vid import gaussian_nll
from kdrun.models import ModelOutput, create_model

METHODS = ["fitnet", "ab", "ft", "nst", "vid", "ofd", "reviewkd", "simkd", "srd"]
PREACT = {"ab", "ofd"}
STAGED = {"ab": "init_epochs", "ft": "paraphraser_epochs", "fitnet": "hint_epochs"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    names = ["resnet8", "wrn_16_2", "shufflenetv2", "mobilenet"]
    return {n: create_model(n, num_classes=10, in_chans=3) for n in names}


def config(name, **overrides):
    cfg = loss_class(name).config(**overrides)
    if name == "fitnet":
        cfg.hint_in_main = True
    return cfg


def pair(models, teacher, student, batch=4):
    """(teacher output without grad, as FrozenTeacher gives it; student output with grad)."""
    x = torch.randn(batch, 3, 32, 32)
    models[teacher].eval()
    with torch.no_grad():
        t_out = models[teacher](x)
    models[student].train()
    return t_out, models[student](x)


def terms_of(loss, name, s_out, t_out):
    """The method's terms in the stage where it is active (ab: its initialisation)."""
    return loss.pretrain_terms(s_out, t_out, None) if name == "ab" else loss(s_out, t_out, None)


def fake(features, preact=None, embedding=None, logits=None):
    b = features[0].shape[0]
    return ModelOutput(logits=logits if logits is not None else torch.zeros(b, 3), features=features,
                       embedding=embedding if embedding is not None else torch.zeros(b, 2),
                       preact_features=preact)


# ---------------------------------------------------------------- formulas by hand

def test_ab_margin_loss_by_hand_and_zero_outside_the_margin():
    t = torch.tensor([-1.0, 1.0, -1.0, 1.0]).view(1, 1, 1, 4)
    s = torch.tensor([-2.0, -0.5, 0.5, 2.0]).view(1, 1, 1, 4)
    # e0: off, beyond -m: 0; e1: on but s <= m: (s-1)^2 = 2.25; e2: off, s > -m: (s+1)^2 = 2.25; e3: 0
    assert boundary_loss(s, t, 1.0).item() == pytest.approx(4.5)
    signs = torch.randn(2, 3, 4, 4).sign()
    assert boundary_loss(2 * signs, signs, 1.0).item() == 0.0


def test_ab_module_weights_stages_by_depth():
    shapes = [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2)]
    s = [torch.randn(*sh) for sh in shapes]
    t = [torch.randn(*sh) for sh in shapes]
    ab = loss_class("ab")(config("ab"), fake(s, s), fake(t, t))  # same shapes: no connectors
    got = ab.pretrain_terms(fake(s, s), fake(t, t), None)["ab"].item()

    def by_hand(a, b):
        a, b = a.numpy(), b.numpy()
        off = (a > -1) & (b <= 0)
        on = (a <= 1) & (b > 0)
        return float(((a + 1) ** 2 * off + (a - 1) ** 2 * on).sum())

    want = 3e-3 * (0.25 * by_hand(s[0], t[0]) + 0.5 * by_hand(s[1], t[1]) + by_hand(s[2], t[2])) / 2
    assert got == pytest.approx(want, rel=1e-5)
    assert ab(fake(s, s), fake(t, t), None) == {}  # no term after the initialisation


def test_ofd_margin_and_partial_l2_by_hand():
    pre = torch.tensor([[-1.0, -3.0], [1.0, 2.0]]).view(1, 2, 1, 2)  # channel 1 is never negative
    margin = negative_mean(pre)
    assert margin[0].item() == pytest.approx(-2.0)
    assert margin[1].item() == pytest.approx(-3 * 0.5)  # never negative: -3 * std of [1, 2]
    t = torch.tensor([-5.0, -1.0, 1.0, -3.0, -3.0]).view(1, 1, 1, 5)
    s = torch.tensor([-4.0, -3.0, 0.0, -2.5, 0.0]).view(1, 1, 1, 5)
    # targets max(t, -2) = [-2, -1, 1, -2, -2]; penalised where s > target or target > 0:
    # e2: (0 - 1)^2 = 1, e4: (0 + 2)^2 = 4
    assert partial_l2(s, t, torch.tensor([-2.0])).item() == pytest.approx(5.0)
    t = torch.randn(2, 3, 4, 4)
    assert partial_l2(t, t, torch.full((3,), -0.5)).item() == 0.0


def test_ofd_margin_is_measured_once_and_saved(models):
    t_out, s_out = pair(models, "wrn_16_2", "resnet8")
    ofd = build_losses({"ofd": config("ofd")}, s_out, t_out)["ofd"]
    ofd(s_out, t_out, None)
    first = [ofd.margin0.clone(), ofd.margin1.clone(), ofd.margin2.clone()]
    assert torch.equal(first[2], negative_mean(t_out.preact_features[-1]))
    other_t, other_s = pair(models, "wrn_16_2", "resnet8")
    ofd(other_s, other_t, None)
    assert torch.equal(ofd.margin2, first[2])  # fixed after the first batch
    fresh = build_losses({"ofd": config("ofd")}, s_out, t_out)["ofd"]
    fresh.load_state_dict(ofd.state_dict())  # resume restores the margins
    assert bool(fresh.margin_ready) and torch.equal(fresh.margin0, first[0])


def test_nst_mmd_by_hand_and_zero_for_equal_maps():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    t = torch.tensor([1.0, 1.0]).view(1, 1, 1, 2)
    # k(s,s) = I -> mean 0.5; k(t,t) = 1; k(s,t) = (1/sqrt 2)^2 = 0.5 each -> 1 + 0.5 - 2 * 0.5
    assert selectivity_mmd(s, t).item() == pytest.approx(0.5, rel=1e-6)
    f = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    nst = loss_class("nst")(config("nst"), fake(f), fake(f))
    assert nst(fake(f), fake([x.clone() for x in f]), None)["nst"].item() == pytest.approx(0, abs=1e-4)


def test_vid_nll_by_hand_and_its_minimum():
    mean = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    var = torch.tensor([2.0])
    want = ((1 / 2 / 2 + 0.5 * math.log(2)) + (4 / 2 / 2 + 0.5 * math.log(2))) / 2
    assert gaussian_nll(mean, target, var).item() == pytest.approx(want, rel=1e-6)
    assert gaussian_nll(target, target, var).item() == pytest.approx(0.5 * math.log(2), rel=1e-6)
    f = [torch.randn(2, 4, 4, 4)]
    vid = loss_class("vid")(config("vid", student_stages=[-1], teacher_stages=[-1]), fake(f), fake(f))
    assert vid.regressors[0].variance().detach().numpy() == pytest.approx(5.0)


def test_ft_factor_loss_by_hand_and_scale_invariance():
    s = torch.tensor([3.0, 4.0]).view(1, 1, 1, 2)
    t = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    # normalised: [0.6, 0.8] vs [1, 0]
    assert factor_loss(s, t, 1).item() == pytest.approx((0.4 + 0.8) / 2, rel=1e-6)
    assert factor_loss(s, t, 2).item() == pytest.approx((0.16 + 0.64) / 2, rel=1e-6)
    f = torch.randn(2, 3, 4, 4)
    assert factor_loss(f, 5 * f, 1).item() == pytest.approx(0, abs=1e-6)


def test_hcl_by_hand_and_zero_for_equal_maps():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    # full: (1+4+9+16)/4 = 7.5; 1x1 pool: 2.5^2 = 6.25 at weight 1/2; normalised by 1.5
    assert hierarchical_context_loss(s, torch.zeros_like(s)).item() == pytest.approx(
        (7.5 + 0.5 * 6.25) / 1.5, rel=1e-6)
    f = torch.randn(2, 3, 8, 8)
    assert hierarchical_context_loss(f, f.clone()).item() == 0.0


def test_reviewkd_ramps_in_over_twenty_epochs():
    cfg = config("reviewkd")
    assert cfg.warmup_epochs == 20 and cfg.weight == 1.0
    f = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    review = loss_class("reviewkd")(cfg, fake(f), fake(f))
    assert review.warmup_factor(0) == pytest.approx(1 / 20) and review.warmup_factor(19) == 1.0


@pytest.mark.parametrize("teacher", ["resnet8", "wrn_16_2", "shufflenetv2", "mobilenet"])
def test_simkd_target_is_the_map_the_teacher_classifier_pools(models, teacher):
    models[teacher].eval()
    with torch.no_grad():
        out = models[teacher](torch.randn(2, 3, 32, 32))
    assert torch.allclose(final_map(out).mean((2, 3)), out.embedding, atol=1e-5)


def constant_head(head, bias):
    """Make conv/linear-BN-ReLU heads output ReLU(bias) whatever the input (BN weight 0)."""
    bn = [m for m in head.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))][-1]
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.copy_(bias)


def test_simkd_loss_and_logits_by_hand(models):
    teacher = models["resnet8"]
    t_out, s_out = pair(models, "resnet8", "resnet8")
    simkd = build_losses({"simkd": config("simkd")}, s_out, t_out)["simkd"]
    with pytest.raises(RuntimeError, match="bind_teacher"):
        simkd.student_logits(s_out)
    simkd.bind_teacher(teacher)
    bias = torch.linspace(-1, 1, 64)
    constant_head(simkd.projector, bias)
    h = np.maximum(bias.numpy(), 0)
    target = np.maximum(t_out.preact_features[-1].numpy(), 0)
    want = ((h[None, :, None, None] - target) ** 2).mean()
    assert simkd(s_out, t_out, None)["simkd"].item() == pytest.approx(want, rel=1e-5)
    w, b = teacher.fc.weight.detach().numpy(), teacher.fc.bias.detach().numpy()
    logits = simkd.student_logits(s_out).detach().numpy()
    assert logits == pytest.approx(np.tile(w @ h + b, (4, 1)), rel=1e-5, abs=1e-6)
    assert ce_weight({"simkd": config("simkd")}) == 0.0
    assert not any("classifier" in k for k in simkd.state_dict())  # never saved


def test_srd_terms_by_hand_and_zero_when_matched(models):
    teacher = models["resnet8"]
    t_out, s_out = pair(models, "resnet8", "resnet8")
    srd = build_losses({"srd": config("srd")}, s_out, t_out)["srd"]
    srd.bind_teacher(teacher)
    bias = torch.linspace(-1, 1, 64)
    constant_head(srd.connector, bias)
    h = np.maximum(bias.numpy(), 0)
    w, b = teacher.fc.weight.detach().numpy(), teacher.fc.bias.detach().numpy()
    terms = srd(s_out, t_out, None)
    assert terms["srd_fm"].item() == pytest.approx(((h - t_out.embedding.numpy()) ** 2).mean(), rel=1e-5)
    assert terms["srd_sr"].item() == pytest.approx(((w @ h + b - t_out.logits.numpy()) ** 2).mean(),
                                                   rel=1e-5)
    matched = ModelOutput(logits=torch.tensor(np.tile(w @ h + b, (4, 1))), features=t_out.features,
                          embedding=torch.tensor(np.tile(h, (4, 1))))
    assert sum(srd(s_out, matched, None).values()).item() == pytest.approx(0, abs=1e-8)


# ---------------------------------------------------------------- gradients and architecture pairs

def pairs_for(name):
    zoo = [("wrn_16_2", "resnet8"), ("wrn_16_2", "shufflenetv2")]
    return zoo if name in PREACT else [zoo[1], ("mobilenet", "resnet8")]


@pytest.mark.parametrize("name,teacher,student",
                         [(n, t, s) for n in METHODS for t, s in pairs_for(n)])
def test_gradients_reach_only_the_student_and_the_loss(models, name, teacher, student):
    t_out, s_out = pair(models, teacher, student)
    loss = build_losses({name: config(name)}, s_out, t_out)[name]
    loss.bind_teacher(models[teacher])  # teacher left trainable: any use of it would show up
    for model in models.values():
        model.zero_grad(set_to_none=True)
    terms = terms_of(loss, name, s_out, t_out)
    assert terms and all(k.startswith(name) for k in terms)
    assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is None for p in models[teacher].parameters())
    assert any(p.grad is not None for p in models[student].parameters())
    learning = [p for n, p in loss.named_parameters() if not n.startswith("paraphraser")]
    assert all(p.grad is not None for p in learning)
    if name == "ft":  # the paraphraser is frozen after its own stage, then trains alone in it
        assert all(p.grad is None for p in loss.paraphraser.parameters())
        (rec,) = loss.pretrain_terms(s_out, t_out, None).values()
        rec.backward()
        assert all(p.grad is not None for p in loss.paraphraser.parameters())
        assert set(map(id, loss.pretrain_parameters(models[student]))) == set(
            map(id, loss.paraphraser.parameters()))


def test_preact_methods_name_the_missing_field_for_timm_models(models):
    from kdrun.losses import check_outputs

    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        timm_out, zoo_out = models["mobilenet"].eval()(x), models["resnet8"].eval()(x)
    for name in sorted(PREACT):
        with pytest.raises(ConfigError, match=rf"loss={name} needs preact_features, which "
                                              r"teacher.name=mobilenet does not provide"):
            check_outputs({name: config(name)}, {"student": ("resnet8", zoo_out),
                                                 "teacher": ("mobilenet", timm_out)})


# ---------------------------------------------------------------- pre-training stages

def test_fitnet_hint_stage_trains_only_up_to_the_guided_stage(models):
    torch.manual_seed(1)
    student, teacher = create_model("resnet8", 10, 3), models["wrn_16_2"].eval()
    x = torch.randn(4, 3, 32, 32)
    losses = build_losses({"fitnet": loss_class("fitnet").config(hint_epochs=1)},
                          student(x), teacher(x).detach(), LossContext(8, 10, 3, 32))
    assert losses["fitnet"].pretrain_epochs == 1
    stage = PretrainStage(Distiller(student, losses, lambda b: teacher(b.x).detach()), "fitnet")
    trainable = {id(p) for p in stage.trainable_parameters()}
    names = {n for n, p in student.named_parameters() if id(p) in trainable}
    assert names == {n for n, _ in student.named_parameters()
                     if n.startswith(("stem.", "stages.0.", "stages.1."))}  # guided stage = index 2
    assert all(id(p) in trainable for p in losses["fitnet"].regressor.parameters())

    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    optimizer = torch.optim.SGD(stage.trainable_parameters(), lr=0.1, momentum=0.9,
                                weight_decay=5e-4)
    batch = Batch(x=x, y=torch.zeros(4, dtype=torch.long), index=torch.arange(4))
    for _ in range(2):
        terms, _ = stage(batch)
        assert set(terms) == {"fitnet"}
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    for n, p in student.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in names), n
    assert losses["fitnet"](student(x), teacher(x).detach(), None) == {}  # paper: no hint in stage 2


@pytest.mark.parametrize("student_name,excluded", [("resnet8", ("fc.",)),
                                                   ("wrn_16_2", ("fc.",)),
                                                   ("shufflenetv2", ("fc.", "head."))])
def test_ab_initialisation_trains_the_student_below_the_classifier(models, student_name, excluded):
    t_out, s_out = pair(models, "resnet8" if student_name != "resnet8" else "wrn_16_2", student_name)
    ab = build_losses({"ab": config("ab")}, s_out, t_out)["ab"]
    chosen = {id(p) for p in ab.pretrain_parameters(models[student_name])}
    for n, p in models[student_name].named_parameters():
        assert (id(p) in chosen) == (not n.startswith(excluded)), n
    assert all(id(p) in chosen for p in ab.parameters())


# ---------------------------------------------------------------- config errors

@pytest.mark.parametrize("name,field,value,needle", [
    ("fitnet", "hint_epochs", -1, "loss.fitnet.hint_epochs=-1 must be >= 0"),
    ("ab", "margin", 0.0, "loss.ab.margin=0.0 must be > 0"),
    ("ab", "init_epochs", 0, "loss.ab.init_epochs=0 must be > 0"),
    ("ab", "student_stages", [1, 2], "loss.ab.student_stages=[1, 2]"),
    ("ft", "beta", -1.0, "loss.ft.beta=-1.0 must be > 0"),
    ("ft", "rate", 1.5, "loss.ft.rate=1.5 must be within (0, 1]"),
    ("ft", "p", 3, "loss.ft.p=3"),
    ("ft", "reconstruction", "l3", "loss.ft.reconstruction=l3"),
    ("ft", "paraphraser_epochs", 0, "loss.ft.paraphraser_epochs=0 must be > 0"),
    ("nst", "weight", 0.0, "loss.nst.weight=0.0 must be > 0"),
    ("nst", "c", -1.0, "loss.nst.c=-1.0 must be >= 0"),
    ("vid", "init_variance", 1e-6, "loss.vid.init_variance=1e-06 must exceed loss.vid.eps"),
    ("vid", "eps", 0.0, "loss.vid.eps=0.0 must be > 0"),
    ("ofd", "weight", -1e-3, "loss.ofd.weight=-0.001 must be > 0"),
    ("reviewkd", "warmup_epochs", -1, "loss.reviewkd.warmup_epochs=-1 must be >= 0"),
    ("reviewkd", "teacher_stages", [-1], "loss.reviewkd.student_stages=[-3, -2, -1]"),
    ("simkd", "factor", 0, "loss.simkd.factor=0 must be > 0"),
    ("srd", "beta", 0.0, "loss.srd.beta=0.0 must be > 0"),
])
def test_validate_names_the_key(name, field, value, needle):
    cfg = loss_class(name).config(**{field: value})
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        loss_class(name).validate(cfg)


def test_fitnet_without_any_stage_is_rejected():
    with pytest.raises(ConfigError, match="loss.fitnet.hint_epochs=0 with loss.fitnet.hint_in_main=false"):
        loss_class("fitnet").validate(loss_class("fitnet").config(hint_epochs=0))
    loss_class("fitnet").validate(loss_class("fitnet").config(hint_epochs=0, hint_in_main=True))


@pytest.mark.parametrize("name", METHODS)
def test_defaults_validate(name):
    loss_class(name).validate(loss_class(name).config())
    assert loss_class(name).knowledge == "feature"


@pytest.mark.parametrize("name,field", sorted(STAGED.items()))
def test_staged_methods_run_their_stage_first(models, name, field):
    t_out, s_out = pair(models, "wrn_16_2", "resnet8")
    loss = build_losses({name: loss_class(name).config()}, s_out, t_out)[name]
    assert loss.pretrain_epochs == getattr(loss.cfg, field) == 30
