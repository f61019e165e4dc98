"""adaptive (CTKD): the temperature is learned adversarially under a cosine curriculum."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TINY
from omegaconf import OmegaConf

from kdrun.algorithms.adaptive import AdaptiveConfig
from kdrun.losses.response.ctkd import (AdaptiveKD, curriculum_strength,
                                                   per_sample_kd, sample_weights)
from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.losses.response.kd import KDConfig, soft_kl
from kdrun.models.output import ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")


def adaptive_kd(epochs=4, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(AdaptiveConfig), overrides)
    return AdaptiveKD(OmegaConf.structured(KDConfig), cfg, num_classes=5, epochs=epochs)


def outputs(batch=6, classes=5):
    torch.manual_seed(0)
    s, t = torch.randn(batch, classes), 3 * torch.randn(batch, classes)
    y = torch.randint(0, classes, (batch,))
    as_out = lambda z: ModelOutput(logits=z, features=[], embedding=z)  # noqa: E731
    return as_out(s), as_out(t), Batch(x=torch.zeros(batch), y=y, index=torch.arange(batch))


def test_cosine_curriculum_of_the_reversal_strength():
    values = [curriculum_strength(e, 10, 0.0, 1.0) for e in range(12)]
    assert values[0] == pytest.approx(0.5 * (1 - math.cos(math.pi / 10)))
    assert values[4] == pytest.approx(0.5)
    assert values[9:] == [1.0, 1.0, 1.0]
    assert all(a < b for a, b in zip(values[:9], values[1:10]))
    assert curriculum_strength(0, 1, 0.2, 0.7) == pytest.approx(0.7)


@pytest.mark.parametrize("epoch", [0, 3])
def test_temperature_gradient_is_reversed_by_the_curriculum(epoch):
    loss = adaptive_kd(curriculum_epochs=4)
    student, teacher, batch = outputs()
    loss.set_epoch(epoch)
    loss(student, teacher, batch)["kd"].backward()
    reversed_grad = loss.temperature.theta.grad.clone()

    theta = loss.temperature.theta.detach().clone().requires_grad_()
    t = 1.0 + 20.0 * torch.sigmoid(theta)
    plain = 0.9 * per_sample_kd(student.logits, teacher.logits, t).mean()
    (grad,) = torch.autograd.grad(plain, theta)
    strength = curriculum_strength(epoch, 4, 0.0, 1.0)
    assert torch.allclose(reversed_grad, -strength * grad)
    # a descent step on the reversed gradient raises the KD loss: the temperature is adversarial
    with torch.no_grad():
        stepped = 1.0 + 20.0 * torch.sigmoid(theta - 0.5 * reversed_grad)
        assert per_sample_kd(student.logits, teacher.logits, stepped).mean() > plain


def test_global_kd_matches_hinton_at_the_current_temperature():
    loss = adaptive_kd()
    student, teacher, batch = outputs()
    t = 1.0 + 20.0 * torch.sigmoid(torch.tensor(1.0))
    expected = 0.9 * soft_kl(student.logits, teacher.logits, t.item())
    assert loss(student, teacher, batch)["kd"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_instance_temperature_is_per_sample_and_bounded():
    loss = adaptive_kd(temperature="instance", min_temperature=2.0, max_temperature=6.0)
    student, teacher, _ = outputs()
    t = loss.current_temperature(student.logits, teacher.logits)
    assert t.shape == (6, 1) and torch.all((t > 2.0) & (t < 6.0))
    assert torch.allclose(t, torch.full_like(t, 4.0))  # zero-initialised last layer: the midpoint


def test_per_sample_weights_as_defined():
    s = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    t = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    ce = lambda z: -torch.log_softmax(z, 1)[torch.arange(3), y]  # noqa: E731
    assert torch.allclose(sample_weights("wsl", s, t, y), 1 - torch.exp(-ce(s) / ce(t)))
    confidence = torch.softmax(t, 1)[torch.arange(3), y]
    assert torch.allclose(sample_weights("confidence", s, t, y), confidence)
    assert torch.equal(sample_weights("none", s, t, y), torch.ones(3))
    w = sample_weights("wsl", s, t, y)  # the teacher right, the student wrong: the largest
    assert w[1] > w[0] and w[1] > w[2] and 0 <= w.min() and w.max() <= 1


def test_temperature_is_learned_within_bounds_along_the_curriculum(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=adaptive", "trainer.epochs=3", "algorithm.curriculum_epochs=2",
                 "algorithm.weighting=wsl"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    record = result["temperature"]
    assert [r["epoch"] for r in record] == [1, 2, 3]
    assert [r["grl_lambda"] for r in record] == pytest.approx([0.5, 1.0, 1.0])
    assert all(1.0 < r["min"] <= r["mean"] <= r["max"] < 21.0 for r in record)
    initial = 1.0 + 20.0 / (1.0 + math.exp(-1.0))
    means = [initial] + [r["mean"] for r in record]
    assert all(a != b for a, b in zip(means, means[1:]))  # it moves every epoch
    assert result["final_temperature"] == record[-1]["mean"]


def test_adaptive_needs_kd(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=adaptive", "loss=at"]
    with pytest.raises(ConfigError, match="loss=kd"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()
