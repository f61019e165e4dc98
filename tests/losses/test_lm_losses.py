"""Token-level methods for task=lm (kd's token path, gkd, hidden, attention): values worked
out by hand, known identities, masking, gradients and build-time config errors."""

from __future__ import annotations

import math

import pytest
import torch

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.losses import build_losses, ce_weight, check_outputs, loss_class
from kdrun.losses.feature.attention import AttentionConfig, attention_kl
from kdrun.losses.feature.hidden import HiddenConfig, uniform_map
from kdrun.losses.response.gkd import GKDConfig
from kdrun.losses.response.kd import DIVERGENCES, KDConfig
from kdrun.models import ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

# One sequence, two tokens, V = 3: probabilities chosen so every value is a short sum.
P_T = [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]
P_S = [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]]
TEACHER = torch.tensor([P_T]).log()
STUDENT = torch.tensor([P_S]).log()
Y = torch.tensor([[1, 2]])


def out(logits, features=None, attentions=None):
    b, t = logits.shape[:2]
    features = features if features is not None else [torch.zeros(b, t, 2)]
    return ModelOutput(logits=logits, features=features, embedding=features[-1], attentions=attentions)


def batch(y):
    return Batch(x=torch.zeros_like(y), y=y, index=torch.arange(y.shape[0]))


def build(name, cfg, student, teacher):
    loss_class(name).validate(cfg)
    return loss_class(name)(cfg, student, teacher)


def run(name, cfg, student, teacher, y=Y):
    return build(name, cfg, student, teacher)(student, teacher, batch(y))


# ---------------------------------------------------------------- explicit formulas


def softmax(z, temperature=1.0):
    e = [math.exp(v / temperature) for v in z]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def jsd(p, q, beta):
    m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


def by_hand(kind, student_rows, teacher_rows, temperature=1.0):
    """Mean over tokens of the scaled divergence between rows of logits (lists of lists)."""
    values = []
    for zs, zt in zip(student_rows, teacher_rows):
        ps, pt = softmax(zs, temperature), softmax(zt, temperature)
        values.append({"forward_kl": kl(pt, ps), "reverse_kl": kl(ps, pt), "js": jsd(pt, ps, 0.5),
                       "tvd": 0.5 * sum(abs(a - b) for a, b in zip(pt, ps))}[kind])
    factor = temperature if kind == "tvd" else temperature**2
    return factor * sum(values) / len(values)


def random_lm(seed, b=2, t=4, v=5, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, v, generator=gen) * scale, torch.randn(b, t, v, generator=gen) * scale


def causal_attention(seed, b=2, heads=2, t=4, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, heads, t, t, generator=gen, requires_grad=requires_grad)
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    return scores, scores.masked_fill(future, float("-inf")).softmax(-1)


# ---------------------------------------------------------------- kd, token path


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_token_kd_by_hand(kind, temperature):
    s, t = STUDENT[0].tolist(), TEACHER[0].tolist()
    expected = 0.5 * by_hand(kind, s, t, temperature)
    cfg = KDConfig(alpha=0.5, temperature=temperature, divergence=kind)
    got = run("kd", cfg, out(STUDENT), out(TEACHER))["kd"]
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_token_kd_forward_by_hand_in_numbers():
    """The explicit sum for forward KL at T = 1, alpha = 1, without any helper."""
    first = 0.2 * math.log(0.2 * 3) + 0.3 * math.log(0.3 * 3) + 0.5 * math.log(0.5 * 3)
    second = 0.6 * math.log(0.6 / 0.5) + 0.3 * math.log(0.3 / 0.25) + 0.1 * math.log(0.1 / 0.25)
    got = run("kd", KDConfig(alpha=1.0, temperature=1.0), out(STUDENT), out(TEACHER))["kd"]
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-5)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_one_token_per_row_equals_the_image_kd(kind):
    """(B, 1, V) logits, every token counted: the token mean is the image path's batch mean."""
    s, t = random_lm(0, b=3, t=1, v=4)
    cfg = KDConfig(alpha=0.7, temperature=2.0, divergence=kind)
    tokens = run("kd", cfg, out(s), out(t), y=torch.zeros(3, 1, dtype=torch.long))["kd"]
    image_s = ModelOutput(logits=s[:, 0], features=[torch.zeros(3, 1, 2, 2)], embedding=s[:, 0])
    image_t = ModelOutput(logits=t[:, 0], features=[torch.zeros(3, 1, 2, 2)], embedding=t[:, 0])
    image = run("kd", cfg, image_s, image_t, y=torch.zeros(3, dtype=torch.long))["kd"]
    assert tokens.item() == pytest.approx(image.item(), rel=1e-5)


def test_token_reverse_kl_is_forward_with_roles_swapped():
    s, t = random_lm(1)
    y = torch.zeros(2, 4, dtype=torch.long)
    cfg = KDConfig(temperature=3.0)
    reverse = run("kd", KDConfig(temperature=3.0, divergence="reverse_kl"), out(s), out(t), y)["kd"]
    forward_swapped = run("kd", cfg, out(t), out(s), y)["kd"]
    assert reverse.item() == pytest.approx(forward_swapped.item(), rel=1e-5)


def test_teacher_log_probabilities_give_the_same_value_as_its_logits():
    """A top-k cache hands the teacher over as log-probabilities; softmax does not mind."""
    s, t = random_lm(2)
    y = torch.zeros(2, 4, dtype=torch.long)
    for kind in DIVERGENCES:
        cfg = KDConfig(temperature=2.0, divergence=kind)
        a = run("kd", cfg, out(s), out(t), y)["kd"]
        b = run("kd", cfg, out(s), out(t.log_softmax(-1)), y)["kd"]
        assert a.item() == pytest.approx(b.item(), rel=1e-5), kind


@pytest.mark.parametrize("name,cfg", [("kd", KDConfig()), ("kd", KDConfig(divergence="tvd")),
                                      ("gkd", GKDConfig()), ("gkd", GKDConfig(beta=0.0))])
def test_masked_tokens_do_not_change_the_value(name, cfg):
    s, t = random_lm(3)
    y = torch.tensor([[1, IGNORE_INDEX, 2, 3], [IGNORE_INDEX, 4, IGNORE_INDEX, 0]])
    counted = y != IGNORE_INDEX
    reference = run(name, cfg, out(s[counted][None]), out(t[counted][None]), y[counted][None])
    dirty_s, dirty_t = s.clone(), t.clone()
    dirty_s[~counted], dirty_t[~counted] = float("nan"), 1e30
    dirty_s.requires_grad_(True)
    got = run(name, cfg, out(dirty_s), out(dirty_t), y)
    assert got[name].item() == pytest.approx(reference[name].item(), rel=1e-5)
    got[name].backward()
    assert torch.isfinite(dirty_s.grad).all() and (dirty_s.grad[~counted] == 0).all()


def test_vocab_mismatch_fails_at_build_time():
    for name, cfg in (("kd", KDConfig()), ("gkd", GKDConfig())):
        with pytest.raises(ConfigError, match="teacher has 4 tokens, student has 3"):
            loss_class(name)(cfg, out(torch.zeros(2, 3, 3)), out(torch.zeros(2, 3, 4)))
    # the image path has no vocabulary: class counts are the engine's business
    loss_class("kd")(KDConfig(), ModelOutput(torch.zeros(2, 3), [torch.zeros(2, 1, 2, 2)], torch.zeros(2, 3)),
                     ModelOutput(torch.zeros(2, 4), [torch.zeros(2, 1, 2, 2)], torch.zeros(2, 4)))


# ---------------------------------------------------------------- gkd


@pytest.mark.parametrize("beta,temperature", [(0.5, 1.0), (0.2, 1.0), (0.8, 2.0)])
def test_gkd_by_hand(beta, temperature):
    s, t = STUDENT[0].tolist(), TEACHER[0].tolist()
    values = [jsd(softmax(zt, temperature), softmax(zs, temperature), beta) for zs, zt in zip(s, t)]
    expected = 0.4 * temperature**2 * sum(values) / len(values)
    cfg = GKDConfig(beta=beta, temperature=temperature, alpha=0.4)
    got = run("gkd", cfg, out(STUDENT), out(TEACHER))["gkd"]
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_gkd_endpoints_are_the_kls_trl_convention(temperature):
    s, t = random_lm(4)
    y = torch.tensor([[0, 1, IGNORE_INDEX, 2], [3, IGNORE_INDEX, 4, 0]])
    for beta, kind in ((0.0, "forward_kl"), (1.0, "reverse_kl")):
        gkd = run("gkd", GKDConfig(beta=beta, temperature=temperature), out(s), out(t), y)["gkd"]
        kd = run("kd", KDConfig(alpha=1.0, temperature=temperature, divergence=kind), out(s), out(t), y)["kd"]
        assert gkd.item() == pytest.approx(kd.item(), rel=1e-5), kind


def test_gkd_alpha_and_ce_weight():
    full = run("gkd", GKDConfig(alpha=1.0), out(STUDENT), out(TEACHER))["gkd"]
    part = run("gkd", GKDConfig(alpha=0.25), out(STUDENT), out(TEACHER))["gkd"]
    assert part.item() == pytest.approx(0.25 * full.item(), rel=1e-6)
    assert ce_weight({"gkd": GKDConfig()}) == 0.0                   # pure GKD: no label term
    assert ce_weight({"gkd": GKDConfig(alpha=0.25)}) == pytest.approx(0.75)


def test_gkd_is_found_by_the_engine_and_keeps_the_sampling_settings():
    cls = loss_class("gkd")
    assert cls.on_policy is True and cls.tasks == ("lm",) and cls.knowledge == "response"
    cfg = GKDConfig()
    assert (cfg.beta, cfg.temperature, cfg.alpha) == (0.5, 1.0, 1.0)
    assert (cfg.on_policy_fraction, cfg.prompt_tokens, cfg.sample_temperature) == (0.0, 16, 1.0)


@pytest.mark.parametrize("field,value,needle", [
    ("beta", 1.5, "loss.gkd.beta=1.5 must be within [0, 1]"),
    ("temperature", 0.0, "loss.gkd.temperature=0.0 must be > 0"),
    ("alpha", -0.1, "loss.gkd.alpha=-0.1 must be within [0, 1]"),
    ("on_policy_fraction", 2.0, "loss.gkd.on_policy_fraction=2.0 must be within [0, 1]"),
    ("prompt_tokens", 0, "loss.gkd.prompt_tokens=0 must be >= 1"),
    ("sample_temperature", 0.0, "loss.gkd.sample_temperature=0.0 must be > 0"),
])
def test_gkd_validate_names_the_key(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        loss_class("gkd").validate(GKDConfig(**{field: value}))


@pytest.mark.parametrize("name,cfg", [("gkd", GKDConfig()), ("hidden", HiddenConfig()),
                                      ("attention", AttentionConfig())])
def test_lm_only_methods_refuse_image_logits(name, cfg):
    image = ModelOutput(torch.zeros(2, 3), [torch.zeros(2, 4, 2, 2)], torch.zeros(2, 3),
                        attentions=[torch.zeros(2, 1, 4, 4)])
    with pytest.raises(ConfigError, match=f"loss={name} is token-level"):
        loss_class(name)(cfg, image, image)
    assert "lm" in loss_class(name).tasks  # hidden, attention also serve task=embed


# ---------------------------------------------------------------- hidden


@pytest.mark.parametrize("n_student,n_teacher,expected", [
    (4, 12, [(0, 2), (1, 5), (2, 8), (3, 11)]),     # TinyBERT: every third teacher block
    (2, 5, [(0, 2), (1, 4)]),                       # 2.5 rounds half up to 3
    (3, 4, [(0, 0), (1, 2), (2, 3)]),
    (3, 3, [(0, 0), (1, 1), (2, 2)]),
    (4, 1, [(0, 0), (1, 0), (2, 0), (3, 0)]),       # a deeper student clamps at block 0
])
def test_uniform_map(n_student, n_teacher, expected):
    assert uniform_map(n_student, n_teacher) == expected


def hidden_pair(widths=(2, 3), blocks=(1, 1), seed=0, t=2, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    s = [torch.randn(1, t, widths[0], generator=gen, requires_grad=requires_grad) for _ in range(blocks[0])]
    te = [torch.randn(1, t, widths[1], generator=gen, requires_grad=requires_grad) for _ in range(blocks[1])]
    return s, te


def test_hidden_mse_and_cosine_by_hand():
    s = [torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])]
    t = [torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]])]
    w, bias = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, 0.5]
    projected = [[sum(w[r][c] * x[c] for c in range(2)) + bias[r] for r in range(3)]
                 for x in s[0][0].tolist()]                          # [1, 2, 3.5], [0, -1, -0.5]
    targets = t[0][0].tolist()
    mse = [sum((a - b) ** 2 for a, b in zip(p, q)) / 3 for p, q in zip(projected, targets)]

    def cos(p, q):
        return sum(a * b for a, b in zip(p, q)) / math.sqrt(sum(a * a for a in p) * sum(b * b for b in q))

    cosine = [1 - cos(p, q) for p, q in zip(projected, targets)]
    y = torch.tensor([[0, 1]])
    for distance, per_token in (("mse", mse), ("cosine", cosine)):
        loss = build("hidden", HiddenConfig(weight=2.0, distance=distance), out(torch.zeros(1, 2, 3), s),
                     out(torch.zeros(1, 2, 3), t))
        with torch.no_grad():
            loss.projections[0].weight.copy_(torch.tensor(w))
            loss.projections[0].bias.copy_(torch.tensor(bias))
        got = loss(out(torch.zeros(1, 2, 3), s), out(torch.zeros(1, 2, 3), t), batch(y))["hidden"]
        assert got.item() == pytest.approx(2.0 * sum(per_token) / 2, rel=1e-5), distance
        # only the second token counted
        got = loss(out(torch.zeros(1, 2, 3), s), out(torch.zeros(1, 2, 3), t),
                   batch(torch.tensor([[IGNORE_INDEX, 1]])))["hidden"]
        assert got.item() == pytest.approx(2.0 * per_token[1], rel=1e-5), distance


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_hidden_identical_states_and_identity_projection_give_zero(distance):
    s, _ = hidden_pair(widths=(3, 3), blocks=(2, 2))
    logits = torch.zeros(1, 2, 3)
    loss = build("hidden", HiddenConfig(distance=distance), out(logits, s), out(logits, s))
    assert all(torch.equal(p.weight, torch.eye(3)) and not p.bias.any() for p in loss.projections)
    got = loss(out(logits, s), out(logits, [f.clone() for f in s]), batch(torch.zeros(1, 2, dtype=torch.long)))
    assert got["hidden"].item() == pytest.approx(0.0, abs=1e-6)


def test_hidden_cosine_is_within_0_and_2():
    s, t = hidden_pair(widths=(4, 4), blocks=(1, 1), t=6)
    logits, y = torch.zeros(1, 6, 3), torch.zeros(1, 6, dtype=torch.long)
    loss = build("hidden", HiddenConfig(distance="cosine"), out(logits, s), out(logits, t))
    value = loss(out(logits, s), out(logits, t), batch(y))["hidden"].item()
    assert 0.0 <= value <= 2.0
    opposite = loss(out(logits, s), out(logits, [-s[0]]), batch(y))["hidden"].item()
    assert opposite == pytest.approx(2.0, rel=1e-6)


def test_hidden_averages_over_pairs_of_the_uniform_map():
    s, t = hidden_pair(widths=(2, 3), blocks=(2, 4), t=3)
    logits, y = torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.long)
    loss = build("hidden", HiddenConfig(), out(logits, s), out(logits, t))
    assert loss.pairs == [(0, 1), (1, 3)]
    got = loss(out(logits, s), out(logits, t), batch(y))["hidden"]
    expected = sum(((proj(s[i]) - t[j]) ** 2).mean() for (i, j), proj in zip(loss.pairs, loss.projections)) / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hidden_explicit_map_with_negative_indices():
    s, t = hidden_pair(widths=(2, 3), blocks=(2, 4), t=3)
    logits = torch.zeros(1, 3, 3)
    loss = build("hidden", HiddenConfig(layer_map=[[0, 0], [-1, -1]]), out(logits, s), out(logits, t))
    assert loss.pairs == [(0, 0), (1, 3)]


def test_hidden_masked_tokens_do_not_change_the_value():
    s, t = hidden_pair(widths=(2, 3), blocks=(1, 1), t=4, seed=5)
    y = torch.tensor([[0, IGNORE_INDEX, 1, IGNORE_INDEX]])
    counted = y != IGNORE_INDEX
    logits = torch.zeros(1, 4, 3)
    loss = build("hidden", HiddenConfig(), out(logits, s), out(logits, t))
    clean = loss(out(logits[:, :2], [s[0][counted][None]]), out(logits[:, :2], [t[0][counted][None]]),
                 batch(y[counted][None]))["hidden"]
    dirty_s, dirty_t = s[0].clone(), t[0].clone()
    dirty_s[~counted], dirty_t[~counted] = float("nan"), float("inf")
    dirty_s.requires_grad_(True)
    got = loss(out(logits, [dirty_s]), out(logits, [dirty_t]), batch(y))["hidden"]
    assert got.item() == pytest.approx(clean.item(), rel=1e-6)
    got.backward()
    assert torch.isfinite(dirty_s.grad).all()


def test_hidden_gradients_reach_the_student_and_the_projections_only():
    s, t = hidden_pair(widths=(2, 3), blocks=(2, 2), requires_grad=True)
    logits = torch.zeros(1, 2, 3)
    loss = build("hidden", HiddenConfig(), out(logits, s), out(logits, t))
    loss(out(logits, s), out(logits, t), batch(torch.zeros(1, 2, dtype=torch.long)))["hidden"].backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in s)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())
    assert all(f.grad is None for f in t)


@pytest.mark.parametrize("layer_map,needle", [
    ([[2, 0]], "student block 2 does not exist; the student has 2 blocks"),
    ([[0, -5]], "teacher block -5 does not exist; the teacher has 4 blocks"),
])
def test_hidden_layer_map_out_of_range_names_the_key(layer_map, needle):
    s, t = hidden_pair(blocks=(2, 4))
    logits = torch.zeros(1, 2, 3)
    with pytest.raises(ConfigError, match=r"^loss\.hidden\.layer_map=.*" + needle) as err:
        build("hidden", HiddenConfig(layer_map=layer_map), out(logits, s), out(logits, t))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,cfg,needle", [
    ("hidden", HiddenConfig(distance="l1"), "loss.hidden.distance=l1: unknown distance"),
    ("hidden", HiddenConfig(layer_map=[[0]]), r"loss.hidden.layer_map=\[\[0\]\]: each entry is a pair"),
    ("hidden", HiddenConfig(weight=0.0), "loss.hidden.weight=0.0 must be > 0"),
    ("attention", AttentionConfig(layer_map=[[0, 1, 2]]), "loss.attention.layer_map=.*each entry is a pair"),
    ("attention", AttentionConfig(weight=-1.0), "loss.attention.weight=-1.0 must be > 0"),
])
def test_validate_names_the_key(name, cfg, needle):
    with pytest.raises(ConfigError, match=needle):
        loss_class(name).validate(cfg)


# ---------------------------------------------------------------- attention


def test_attention_by_hand():
    # one head, T = 2: row 0 sees only key 0 (KL 0); row 1: teacher [1/4, 3/4], student [1/2, 1/2]
    teacher = torch.tensor([[[[1.0, 0.0], [0.25, 0.75]]]])
    student = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    row1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    logits = torch.zeros(1, 2, 3)
    s, t = out(logits, attentions=[student]), out(logits, attentions=[teacher])
    loss = build("attention", AttentionConfig(weight=3.0), s, t)
    assert loss(s, t, batch(torch.tensor([[0, 1]])))["attention"].item() == pytest.approx(3.0 * row1 / 2, rel=1e-6)
    assert loss(s, t, batch(torch.tensor([[IGNORE_INDEX, 1]])))["attention"].item() \
        == pytest.approx(3.0 * row1, rel=1e-6)


def test_attention_identical_maps_give_zero():
    _, maps = causal_attention(0, heads=3)
    mask = torch.ones(2, 4, dtype=torch.bool)
    assert attention_kl(maps, maps.clone(), mask).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_head_average_is_the_explicit_mean_across_head_counts():
    _, student = causal_attention(1, heads=2)
    _, teacher = causal_attention(2, heads=3)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    rows = []
    for b in range(2):
        for q in range(4):
            if mask[b, q]:
                s = [sum(student[b, h, q, k].item() for h in range(2)) / 2 for k in range(4)]
                t = [sum(teacher[b, h, q, k].item() for h in range(3)) / 3 for k in range(4)]
                rows.append(kl(t, s))
    expected = sum(rows) / len(rows)
    assert attention_kl(student, teacher, mask).item() == pytest.approx(expected, rel=1e-5)
    averaged = attention_kl(student.mean(1, keepdim=True), teacher.mean(1, keepdim=True), mask)
    assert attention_kl(student, teacher, mask).item() == pytest.approx(averaged.item(), rel=1e-6)


def test_attention_head_average_is_at_most_minilm_per_head_kl():
    _, student = causal_attention(3, heads=4)
    _, teacher = causal_attention(4, heads=4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    per_head = sum(attention_kl(student[:, h:h + 1], teacher[:, h:h + 1], mask) for h in range(4)) / 4
    assert attention_kl(student, teacher, mask).item() <= per_head.item() + 1e-7


def test_attention_default_pairs_the_last_blocks():
    _, a = causal_attention(5)
    _, b = causal_attention(6)
    logits, y = torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    s = out(logits, attentions=[b, a, a])
    t = out(logits, attentions=[a, a])                 # student block 0 differs, last blocks agree
    loss = build("attention", AttentionConfig(), s, t)
    assert loss.pairs == [(2, 1)]
    assert loss(s, t, batch(y))["attention"].item() == pytest.approx(0.0, abs=1e-6)
    first = build("attention", AttentionConfig(layer_map=[[0, 0]]), s, t)
    assert first(s, t, batch(y))["attention"].item() > 1e-3
    uniform = build("attention", AttentionConfig(layer_map=[]), s, t)
    assert uniform.pairs == uniform_map(3, 2)


def test_attention_masked_rows_do_not_change_the_value_and_grads_stay_finite():
    scores, student = causal_attention(7, requires_grad=True)
    _, teacher = causal_attention(8, heads=3)
    y = torch.tensor([[0, IGNORE_INDEX, 1, 2], [IGNORE_INDEX, IGNORE_INDEX, 3, 4]])
    counted = y != IGNORE_INDEX
    reference = attention_kl(student.detach(), teacher, counted)
    dirty_s, dirty_t = student.clone(), teacher.clone()
    dirty_s.transpose(1, 2)[~counted] = float("nan")
    dirty_t.transpose(1, 2)[~counted] = float("nan")
    logits = torch.zeros(2, 4, 3)
    s, t = out(logits, attentions=[dirty_s]), out(logits, attentions=[dirty_t])
    got = build("attention", AttentionConfig(), s, t)(s, t, batch(y))["attention"]
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)
    got.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


def test_attention_gradients_reach_the_student_only():
    _, student = causal_attention(9)
    student = student.detach().requires_grad_(True)
    teacher = causal_attention(10)[1].detach().requires_grad_(True)
    logits, y = torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    s, t = out(logits, attentions=[student]), out(logits, attentions=[teacher])
    loss = build("attention", AttentionConfig(), s, t)
    assert not list(loss.parameters())
    loss(s, t, batch(y))["attention"].backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and teacher.grad is None


def test_attention_layer_map_out_of_range_names_the_key():
    _, a = causal_attention(11)
    s = t = out(torch.zeros(2, 4, 3), attentions=[a, a])
    with pytest.raises(ConfigError, match=r"^loss\.attention\.layer_map=\[\[0, 2\]\]: teacher block 2 "
                                          r"does not exist; the teacher has 2 blocks"):
        build("attention", AttentionConfig(layer_map=[[0, 2]]), s, t)


def test_attention_needs_models_that_return_attentions():
    plain = out(torch.zeros(2, 4, 3))
    with pytest.raises(ConfigError, match="loss=attention needs attentions"):
        check_outputs({"attention": AttentionConfig()}, {"student": ("tiny_lm", plain), "teacher": ("tiny_lm", plain)})


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["gkd", "hidden", "attention"])
def test_yaml_composes_and_builds(name, compose_cfg):
    cfg = compose_cfg([f"loss={name}"])
    loss_class(name).validate(cfg.loss[name])
    _, maps = causal_attention(12)
    gen = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 4, 3, generator=gen) for _ in range(2)]
    probe = ModelOutput(torch.zeros(2, 4, 5), features, features[-1], attentions=[maps, maps])
    losses = build_losses(cfg.loss, probe, probe)
    terms = losses[name](probe, probe, batch(torch.zeros(2, 4, dtype=torch.long)))
    assert list(terms) == [name] and torch.isfinite(terms[name])


def test_loss_lists_compose_with_kd_and_the_ce_weight_is_the_product(compose_cfg):
    cfg = compose_cfg(["loss=[gkd,hidden,kd]", "loss.gkd.alpha=0.5", "loss.hidden.layer_map=[[0,1]]"])
    assert list(cfg.loss) == ["gkd", "hidden", "kd"]
    assert cfg.loss.hidden.layer_map == [[0, 1]]
    assert ce_weight(cfg.loss) == pytest.approx(0.5 * 1.0 * (1 - 0.9))
