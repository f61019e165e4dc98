"""task=embed's losses and metrics against hand-computed values and known identities: the embed
loss (cosine, squared L2, its projection), hidden/attention on sentence batches (real tokens
only, bidirectional rows), linear CKA, recall@1 and the linear probe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.data.sentences import SentenceBatch
from kdrun.losses import loss_class
from kdrun.losses.feature.attention import AttentionConfig
from kdrun.losses.feature.embed import EmbedConfig, embedding_distance
from kdrun.losses.feature.hidden import HiddenConfig
from kdrun.models import ModelOutput
from kdrun.tasks.embed import linear_cka, linear_probe, recall_at_1


def sentence_out(embedding, features=None, attentions=None):
    return ModelOutput(torch.zeros(embedding.shape[0], 3), features or [], embedding,
                       attentions=attentions)


def batch_of(mask):
    mask = torch.as_tensor(mask, dtype=torch.bool)
    ids = mask.long() * 7
    return SentenceBatch(ids, torch.zeros(mask.shape[0], dtype=torch.long),
                         torch.arange(mask.shape[0]), None, mask)


def test_embedding_distance_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert embedding_distance(s, t, "cosine").tolist() == pytest.approx([1.0, 0.0])
    assert embedding_distance(s, t, "l2").tolist() == pytest.approx([2.0, 1.0])
    # unit vectors: squared L2 = 2 (1 - cos)
    a, b = F.normalize(torch.randn(5, 4), dim=1), F.normalize(torch.randn(5, 4), dim=1)
    assert torch.allclose(embedding_distance(a, b, "l2"), 2 * embedding_distance(a, b, "cosine"),
                          atol=1e-6)


def test_embed_loss_is_identity_projected_at_equal_width_and_weighted():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    loss = loss_class("embed")(EmbedConfig(weight=2.0), sentence_out(s), sentence_out(t))
    terms = loss(sentence_out(s), sentence_out(t), batch_of([[1, 1], [1, 0]]))
    expected = 2.0 * ((1 - 1 / math.sqrt(2)) + 0.0) / 2
    assert terms["embed"].item() == pytest.approx(expected, rel=1e-6)
    l2 = loss_class("embed")(EmbedConfig(distance="l2"), sentence_out(s), sentence_out(t))
    assert l2(sentence_out(s), sentence_out(t), None)["embed"].item() == pytest.approx((1 + 0) / 2)


def test_embed_loss_projects_a_narrow_student_and_trains_only_it():
    torch.manual_seed(0)
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    loss = loss_class("embed")(EmbedConfig(), sentence_out(student), sentence_out(teacher))
    assert loss.projection.weight.shape == (5, 3)
    loss(sentence_out(student), sentence_out(teacher), None)["embed"].backward()
    assert student.grad is not None and loss.projection.weight.grad is not None
    assert teacher.grad is None  # the teacher's embedding is a target


def test_embed_loss_sets_the_label_ce_weight():
    from kdrun.losses import ce_weight

    assert ce_weight({"embed": EmbedConfig()}) == 1.0
    assert ce_weight({"embed": EmbedConfig(label_weight=0.0)}) == 0.0  # embedding alone


def test_embed_loss_refuses_an_unknown_distance():
    with pytest.raises(ConfigError, match="loss.embed.distance=dot: unknown distance; use cosine or l2"):
        loss_class("embed").validate(EmbedConfig(distance="dot"))


def test_hidden_counts_only_real_tokens_of_a_sentence_batch():
    student = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])   # B=1, T=2, H=2; token 2 is padding
    teacher = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    s_out = sentence_out(torch.zeros(1, 2), features=[student])
    t_out = sentence_out(torch.zeros(1, 2), features=[teacher])
    loss = loss_class("hidden")(HiddenConfig(), s_out, t_out)  # identity projection at width 2
    value = loss(s_out, t_out, batch_of([[1, 0]]))["hidden"].item()
    assert value == pytest.approx((1.0 + 0.0) / 2)  # mean over H of the one real token


def test_attention_kl_on_bidirectional_rows_of_real_tokens():
    # one head, T=3, the last token padding: rows of real queries over real keys
    t = torch.tensor([[[[0.5, 0.5, 0.0], [0.25, 0.75, 0.0], [0.3, 0.3, 0.4]]]])
    s = torch.tensor([[[[0.25, 0.75, 0.0], [0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]]])
    s_out = sentence_out(torch.zeros(1, 2), features=[torch.zeros(1, 3, 2)], attentions=[s])
    t_out = sentence_out(torch.zeros(1, 2), features=[torch.zeros(1, 3, 2)], attentions=[t])
    loss = loss_class("attention")(AttentionConfig(), s_out, t_out)
    value = loss(s_out, t_out, batch_of([[1, 1, 0]]))["attention"].item()
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert value == pytest.approx((row0 + 0.0) / 2, rel=1e-6)


def test_linear_cka_identities():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation + 2.0) == pytest.approx(1.0)  # rotation, scale, shift
    # by hand: x = [1, -1, 0]^T, y = [1, 1, -2]^T are orthogonal after centring: CKA 0
    assert linear_cka(torch.tensor([[1.0], [-1.0], [0.0]]),
                      torch.tensor([[1.0], [1.0], [-2.0]])) == pytest.approx(0.0, abs=1e-12)
    # 1-D: CKA is the squared correlation
    a, b = torch.randn(40, 1), torch.randn(40, 1)
    r = torch.corrcoef(torch.cat([a, b], 1).T)[0, 1].item()
    assert linear_cka(a, b) == pytest.approx(r * r, rel=1e-5)


def test_recall_at_1_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert recall_at_1(x, torch.tensor([0, 0, 1, 1])) == pytest.approx(100.0)
    assert recall_at_1(x, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)
    assert recall_at_1(x, torch.tensor([0, 0, 1, 0])) == pytest.approx(50.0)  # rows 0, 1 only


def test_linear_probe_separates_separable_embeddings_and_is_chance_on_noise():
    rng = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 4, generator=rng) + 4.0 * y[:, None]
    assert linear_probe(x.numpy(), y.numpy(), x.numpy(), y.numpy()) == pytest.approx(100.0)
    noise = torch.randn(400, 4, generator=rng)
    score = linear_probe(noise[:200].numpy(), y.numpy(), noise[200:].numpy(), y.numpy())
    assert 30.0 < score < 70.0
