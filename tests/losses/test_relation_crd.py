"""crd: NCE and InfoNCE by hand, the memory bank (rows written only at batch.index,
negatives never the sample itself), the queue (never beyond queue_size), and config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.losses import LossContext, loss_class
from kdrun.losses.relation.contrast_memory import EmbeddingQueue, MemoryBank
from kdrun.losses.relation.crd import CRDConfig, infonce_loss, nce_loss
from kdrun.models import ModelOutput


def out(embedding):
    return ModelOutput(logits=torch.zeros(embedding.shape[0], 3), features=[], embedding=embedding)


def batch(index):
    index = torch.as_tensor(index)
    return Batch(torch.zeros(len(index), 1, 2, 2), torch.zeros(len(index), dtype=torch.long), index)


def build(cfg, num_train=12, s_dim=6, t_dim=9):
    loss_class("crd").validate(cfg)
    return loss_class("crd")(cfg, out(torch.zeros(2, s_dim)), out(torch.zeros(2, t_dim)),
                             LossContext(num_train=num_train, num_classes=3))


def test_nce_by_hand():
    scores = torch.tensor([[0.5, 0.1, 0.3], [0.2, 0.4, 0.05]])
    noise = 2 / 10                                         # K * P_n with K = 2, n = 10
    want = 0.0
    for row in scores.tolist():
        want -= math.log(row[0] / (row[0] + noise))
        want -= sum(math.log(noise / (x + noise)) for x in row[1:])
    assert nce_loss(scores, 10).item() == pytest.approx(want / 2, rel=1e-5)


def test_infonce_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    want = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
    assert infonce_loss(logits).item() == pytest.approx(want, rel=1e-6)


def test_memory_bank_writes_only_the_batch_rows_with_momentum():
    torch.manual_seed(0)
    crd = build(CRDConfig(num_negatives=7))
    before_s, before_t = crd.memory.student.clone(), crd.memory.teacher.clone()
    e_s, e_t = torch.randn(2, 6), torch.randn(2, 9)
    terms = crd(out(e_s), out(e_t), batch([3, 8]))
    assert set(terms) == {"crd"} and torch.isfinite(terms["crd"])
    others = [i for i in range(12) if i not in (3, 8)]
    assert torch.equal(crd.memory.student[others], before_s[others])
    assert torch.equal(crd.memory.teacher[others], before_t[others])
    with torch.no_grad():
        v_s = F.normalize(crd.embed_s(e_s), dim=1)
        v_t = F.normalize(crd.embed_t(e_t), dim=1)
    assert torch.allclose(crd.memory.student[[3, 8]], F.normalize(0.5 * before_s[[3, 8]] + 0.5 * v_s, dim=1))
    assert torch.allclose(crd.memory.teacher[[3, 8]], F.normalize(0.5 * before_t[[3, 8]] + 0.5 * v_t, dim=1))
    assert crd.z_student.item() > 0 and crd.z_teacher.item() > 0   # Z estimated on the first batch
    z = crd.z_student.clone()
    crd(out(torch.randn(2, 6)), out(torch.randn(2, 9)), batch([0, 1]))
    assert torch.equal(crd.z_student, z)                            # ... and kept afterwards


def test_memory_bank_negatives_are_other_samples_in_range():
    torch.manual_seed(1)
    bank = MemoryBank(num_rows=5, dim=4)
    index = torch.tensor([0, 2, 4])
    rows = bank.sample(index, 500)
    assert rows.shape == (3, 501) and torch.equal(rows[:, 0], index)
    assert (rows[:, 1:] != index.unsqueeze(1)).all()
    assert rows.min() >= 0 and rows.max() <= 4
    assert set(rows[0, 1:].tolist()) == {1, 2, 3, 4}                # every other row is reachable


@pytest.mark.parametrize("num_rows", [40, 20])          # gathered rows / whole bank scored
def test_bank_scores_and_backward_after_the_update(num_rows):
    torch.manual_seed(4)
    bank = MemoryBank(num_rows=num_rows, dim=3)
    rows = bank.sample(torch.tensor([1, 6]), 1)
    anchor = torch.randn(2, 3)
    want = torch.tensor([[float(bank.teacher[r] @ anchor[i]) for r in rows[i]] for i in range(2)])
    assert torch.allclose(MemoryBank.scores(bank.teacher, rows, anchor), want, atol=1e-6)
    crd = build(CRDConfig(num_negatives=1), num_train=num_rows)
    value = crd(out(torch.randn(2, 6)), out(torch.randn(2, 9)), batch([0, 5]))["crd"]
    value.backward()                                        # the in-place bank update is safe
    assert all(p.grad is not None for p in crd.parameters())


def test_memory_bank_rejects_indices_beyond_num_train():
    crd = build(CRDConfig(num_negatives=4), num_train=4)
    with pytest.raises(RuntimeError, match="outside the memory bank of 4 rows"):
        crd(out(torch.randn(2, 6)), out(torch.randn(2, 9)), batch([1, 4]))


def test_queue_never_exceeds_its_size_and_keeps_the_newest():
    queue = EmbeddingQueue(size=5, dim=3)
    pushed = [F.normalize(torch.randn(3, 3), dim=1) for _ in range(4)]
    for chunk in pushed:
        queue.push(chunk, -chunk)
    assert queue.student.shape == (5, 3) and queue.teacher.shape == (5, 3)
    assert queue.pointer.item() == 12 % 5
    newest = torch.cat(pushed)[-5:]                                  # rows 7..11 written last
    order = [(7 + i) % 5 for i in range(5)]
    assert torch.equal(queue.student[order], newest)
    assert torch.equal(queue.teacher[order], -newest)
    queue.push(torch.ones(8, 3), torch.ones(8, 3))                   # a batch larger than the queue
    assert queue.student.shape == (5, 3) and torch.equal(queue.student, torch.ones(5, 3))


@pytest.mark.parametrize("objective", ["nce", "infonce"])
def test_queue_variant_trains_heads_and_holds_its_size(objective):
    torch.manual_seed(2)
    crd = build(CRDConfig(negatives="queue", queue_size=6, objective=objective))
    assert not hasattr(crd.memory, "num_rows")                       # no per-sample memory
    for step in range(3):
        e_s = torch.randn(4, 6, requires_grad=True)
        value = crd(out(e_s), out(torch.randn(4, 9)), batch(range(4 * step, 4 * step + 4)))["crd"]
        value.backward()
        assert crd.memory.student.shape == (6, 128) and crd.memory.teacher.shape == (6, 128)
    assert e_s.grad is not None
    assert all(p.grad is not None for p in crd.parameters())
    buffers = dict(crd.named_buffers())
    assert {"memory.student", "memory.teacher", "memory.pointer", "z_student"} <= set(buffers)
    assert not any(b.requires_grad for b in buffers.values())


def test_infonce_with_memory_bank_by_hand():
    torch.manual_seed(3)
    crd = build(CRDConfig(objective="infonce", num_negatives=3, weight=1.0, temperature=0.5))
    bank_s, bank_t = crd.memory.student.clone(), crd.memory.teacher.clone()
    e_s, e_t = torch.randn(1, 6), torch.randn(1, 9)
    state = torch.get_rng_state()
    rows = crd.memory.sample(torch.tensor([5]), 3)
    torch.set_rng_state(state)                                      # the loss draws the same rows
    got = crd(out(e_s), out(e_t), batch([5]))["crd"]
    with torch.no_grad():
        v_s, v_t = F.normalize(crd.embed_s(e_s), dim=1)[0], F.normalize(crd.embed_t(e_t), dim=1)[0]
    want = 0.0
    for anchor, keys in ((v_s, bank_t[rows[0]]), (v_t, bank_s[rows[0]])):
        logits = [float(k @ anchor) / 0.5 for k in keys]
        want -= logits[0] - math.log(sum(math.exp(x) for x in logits))
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("field,value,needle", [
    ("weight", 0.0, "loss.crd.weight=0.0"), ("feat_dim", 0, "loss.crd.feat_dim=0"),
    ("num_negatives", 0, "loss.crd.num_negatives"), ("temperature", -0.1, "loss.crd.temperature"),
    ("queue_size", 0, "loss.crd.queue_size"), ("momentum", 1.0, "loss.crd.momentum=1.0"),
    ("negatives", "ring", "loss.crd.negatives=ring"), ("objective", "triplet", "loss.crd.objective"),
])
def test_crd_rejects_bad_values(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        loss_class("crd").validate(CRDConfig(**{field: value}))


def test_crd_without_the_training_set_size_fails_clearly():
    with pytest.raises(ConfigError, match="num_train"):
        loss_class("crd")(CRDConfig(), out(torch.zeros(2, 4)), out(torch.zeros(2, 4)), None)
