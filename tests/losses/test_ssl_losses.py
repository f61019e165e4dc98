"""The label-free losses of task=ssl (dino, seed) against hand-computed values and identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdrun.losses.relation.seed import SEED, SEEDConfig, seed_logits, seed_loss
from kdrun.losses.response.dino import DINO, DINOConfig, dino_loss, ema_
from kdrun.models.output import ModelOutput
from kdrun.tasks.ssl_objective import SSLObjective


def probe(width):
    return ModelOutput(torch.zeros(1, 1), [], torch.zeros(1, width))


def cross_entropy(q, logits):
    """-sum_k q_k log softmax(logits)_k, written out."""
    z = sum(math.exp(v) for v in logits)
    return -sum(qk * (v - math.log(z)) for qk, v in zip(q, logits))


def softmax(values):
    z = sum(math.exp(v) for v in values)
    return [math.exp(v) / z for v in values]


def test_dino_loss_by_hand_skips_same_view_pairs():
    teacher = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    student = [torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.2]]), torch.tensor([[0.1, 0.3]])]
    center = torch.tensor([[0.5, 0.5]])
    tau_s, tau_t = 0.5, 0.25
    q = [softmax([(a - c) / tau_t for a, c in zip(t[0].tolist(), center[0].tolist())]) for t in teacher]
    s = [[v / tau_s for v in x[0].tolist()] for x in student]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher crop, student crop), never the same crop
    expected = sum(cross_entropy(q[i], s[j]) for i, j in pairs) / len(pairs)
    assert dino_loss(student, teacher, center, tau_s, tau_t).item() == pytest.approx(expected, rel=1e-6)


def test_dino_loss_is_the_teacher_entropy_when_the_student_matches():
    torch.manual_seed(0)
    t = torch.randn(4, 6)
    center = torch.randn(1, 6)
    tau_s, tau_t = 2.0, 1.0
    student = [(t - center) * tau_s / tau_t] * 3  # softmax(s / tau_s) = softmax((t - c) / tau_t)
    q = F.softmax((t - center) / tau_t, 1)
    entropy = -(q * q.log()).sum(1).mean()
    assert entropy > 0.1
    assert dino_loss(student, [t, t], center, tau_s, tau_t).item() == pytest.approx(entropy.item(), rel=1e-5)


def test_dino_centre_moves_to_the_teacher_mean_and_the_heads_average():
    torch.manual_seed(0)
    loss = DINO(DINOConfig(out_dim=8, hidden_dim=16, bottleneck_dim=4), probe(5))
    teacher = [torch.randn(3, 5), torch.randn(3, 5)]
    scores = loss.teacher_head(torch.cat(teacher)).detach()
    loss.train()(teacher, teacher, None)
    assert torch.allclose(loss.center, 0.1 * scores.mean(0, keepdim=True), atol=1e-6)
    before = [p.clone() for p in loss.teacher_head.parameters()]
    with torch.no_grad():
        for p in loss.head.parameters():
            p.add_(1.0)
    loss.update_teacher(0.9)
    for old, new, student in zip(before, loss.teacher_head.parameters(), loss.head.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * student, atol=1e-6)
    assert not any(p.requires_grad for p in loss.teacher_head.parameters())


def test_ema_and_the_cosine_momentum_schedule():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.75 * a.weight.detach() + 0.25 * b.weight.detach()
    ema_(a, b, 0.75)
    assert torch.allclose(a.weight, expected)
    student = torch.nn.Linear(3, 3)
    student.forward = lambda x: ModelOutput(x, [], x)
    dino = DINO(DINOConfig(momentum=0.9), probe(3))
    objective = SSLObjective(student, torch.nn.ModuleDict({"dino": dino}), total_steps=10)
    momenta = []
    for step in (0, 5, 10):
        objective.step.fill_(step)
        momenta.append(objective.ema_momentum())
    assert momenta == pytest.approx([0.9, 0.95, 1.0])
    assert SSLObjective(student, torch.nn.ModuleDict({"dino": dino})).ema_momentum() == 0.9


def test_dino_teacher_temperature_warms_up_linearly():
    dino = DINO(DINOConfig(teacher_temperature=0.07, warmup_teacher_temperature=0.04,
                           warmup_teacher_temperature_epochs=3), probe(3))
    temps = []
    for epoch in range(5):
        dino.set_epoch(epoch)
        temps.append(dino.teacher_temperature())
    assert temps == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07])


def test_seed_loss_by_hand():
    s = F.normalize(torch.tensor([[1.0, 1.0]]), dim=1)
    t = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    tau_s, tau_t = 2.0, 1.0
    r = 1 / math.sqrt(2)
    sims_s, sims_t = [r, r, -r], [1.0, 0.0, -1.0]  # own teacher entry first, then the queue
    expected = cross_entropy(softmax([v / tau_t for v in sims_t]), [v / tau_s for v in sims_s])
    assert seed_loss(s, t, queue, tau_s, tau_t).item() == pytest.approx(expected, rel=1e-6)
    got_s, got_t = seed_logits(s, t, queue)
    assert got_s[0].tolist() == pytest.approx(sims_s) and got_t[0].tolist() == pytest.approx(sims_t)


def test_seed_loss_is_smallest_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(5, 4), dim=1)
    queue = F.normalize(torch.randn(7, 4), dim=1)
    target = F.softmax(seed_logits(t, t, queue)[1] / 0.3, 1)
    entropy = -(target * target.log()).sum(1).mean()
    assert seed_loss(t, t, queue, 0.3, 0.3).item() == pytest.approx(entropy.item(), rel=1e-5)
    other = F.normalize(torch.randn(5, 4), dim=1)
    assert seed_loss(other, t, queue, 0.3, 0.3) > entropy


def test_seed_queue_is_a_fifo_of_teacher_embeddings():
    loss = SEED(SEEDConfig(queue_size=4), probe(3), probe(2))
    rows = F.normalize(torch.randn(3, 2), dim=1)
    loss.enqueue(rows)
    assert torch.equal(loss.queue[:3], rows) and int(loss.queue_ptr) == 3
    more = F.normalize(torch.randn(3, 2), dim=1)
    loss.enqueue(more)  # wraps: slot 3, then 0 and 1
    assert torch.equal(loss.queue[3], more[0]) and torch.equal(loss.queue[:2], more[1:])
    assert int(loss.queue_ptr) == 2
    student, teacher = [torch.randn(2, 3)], [torch.randn(2, 2)]
    loss.train()(student, teacher, None)
    assert torch.allclose(loss.queue[2:4], F.normalize(teacher[0], dim=1))  # what it was taught
