"""adversarial: a discriminator is trained (and logged) on teacher vs student outputs, and
the student's updates lower its accuracy on student outputs."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY
from omegaconf import OmegaConf
from torch import nn

from kdrun.algorithms.adversarial import AdversarialConfig
from kdrun.losses.response.adversarial import AdversarialTransfer
from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.models.output import ModelOutput
from kdrun.tracking.tracker import Tracker

MULTI = [*TINY, "algorithm=adversarial", "algorithm.branches=[logits,embedding,features.-1]",
         "teacher=resnet14"]


def adversarial(**overrides) -> AdversarialTransfer:
    cfg = OmegaConf.merge(OmegaConf.structured(AdversarialConfig), overrides)
    probe = ModelOutput(torch.zeros(2, 10), [], torch.zeros(2, 8))
    return AdversarialTransfer(cfg, probe, probe, num_classes=10)


def discriminator_accuracy(transfer: AdversarialTransfer, logits: torch.Tensor, y) -> float:
    with torch.no_grad():
        return (transfer.discriminators["logits"](logits, y) < 0).float().mean().item()


def test_student_updates_lower_the_discriminators_accuracy_on_student_outputs():
    torch.manual_seed(0)
    x, y = torch.randn(128, 16), torch.randint(0, 10, (128,))
    teacher_logits = 4.0 * nn.functional.one_hot(y, 10).float() + 0.1 * torch.randn(128, 10)
    student = nn.Linear(16, 10)  # starts far from the teacher's confident logits
    transfer = adversarial(d_lr=1e-3)
    teacher = ModelOutput(teacher_logits, [], torch.zeros(128, 8))
    for _ in range(30):  # the discriminator learns to tell them apart
        transfer.discriminator_step({"logits": student(x).detach()}, {"logits": teacher_logits}, y)
    before = discriminator_accuracy(transfer, student(x), y)
    assert before > 0.9
    assert all(not p.requires_grad for p in transfer.discriminators.parameters())

    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    batch = Batch(x, y, torch.arange(128))
    transfer.eval()  # student steps only: the discriminator stays as it is
    frozen = [p.clone() for p in transfer.discriminators.parameters()]
    for _ in range(15):
        out = ModelOutput(student(x), [], torch.zeros(128, 8))
        loss = transfer(out, teacher, batch)["adv_logits"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = discriminator_accuracy(transfer, student(x), y)
    assert after < before - 0.3
    assert all(torch.equal(a, b) for a, b in zip(frozen, transfer.discriminators.parameters()))
    assert all(p.grad is None for p in transfer.discriminators.parameters())


def test_the_discriminator_step_trains_only_the_discriminator():
    transfer = adversarial()
    y = torch.randint(0, 10, (8,))
    student_logits = torch.randn(8, 10, requires_grad=True)
    before = [p.clone() for p in transfer.discriminators.parameters()]
    out = transfer(ModelOutput(student_logits, [], torch.zeros(8, 8)),
                   ModelOutput(torch.randn(8, 10), [], torch.zeros(8, 8)), Batch(None, y, None))
    assert any(not torch.equal(a, b) for a, b in zip(before, transfer.discriminators.parameters()))
    assert student_logits.grad is None  # the D step used detached outputs
    out["adv_logits"].backward()
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0
    metrics = transfer.epoch_metrics()
    assert set(metrics) == {"disc_acc", "disc_acc_teacher", "disc_acc_student", "disc_loss"}
    assert transfer.epoch_metrics() == {}  # read once per epoch, then reset


def interrupt_after_first_epoch(monkeypatch):
    """The next cell dies right after its epoch-1 checkpoint (before logging epoch 2)."""
    original = Tracker.log_epoch
    state = {"armed": True}

    def log_epoch(self, record):
        if state["armed"] and record.get("epoch") == 2:
            state["armed"] = False
            raise KeyboardInterrupt("simulated kill")
        return original(self, record)

    monkeypatch.setattr(Tracker, "log_epoch", log_epoch)


def test_multi_branch_discriminators_are_trained_logged_and_resume_exactly(compose_cfg, tmp_path,
                                                                           monkeypatch):
    straight = run_cell(compose_cfg(MULTI), tmp_path / "straight", MULTI)
    assert straight["status"] == "completed" and straight["branches"] == ["logits", "embedding",
                                                                          "features.-1"]
    lines = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        assert {"loss/adv_logits", "loss/adv_embedding", "loss/adv_features_-1", "loss/kd",
                "disc_acc", "disc_acc_teacher", "disc_acc_student", "disc_loss"} <= set(line)
        assert 0 <= line["disc_acc"] <= 100
    assert straight["disc_acc"] == lines[-1]["disc_acc"]
    last = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    d_state = last["model"]["losses.adversarial._extra_state"]["d_optim"]["state"]
    assert d_state and all(s["step"] == 2 * 3 for s in d_state.values())  # Adam ran every step

    interrupt_after_first_epoch(monkeypatch)
    cell = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_cell(compose_cfg(MULTI), cell, MULTI)
    resumed = run_cell(compose_cfg(MULTI), cell, MULTI)
    assert resumed["resumed_from"] == 1
    for key in ("student_top1", "best_student_top1", "val_top1", "disc_acc", "disc_acc_student"):
        assert resumed[key] == straight[key], key
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "epoch_s"}  # noqa: E731
    assert ([strip(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
            == [strip(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()])


@pytest.mark.parametrize("override,key", [("algorithm.branches=[features.9]", "algorithm.branches"),
                                          ("algorithm.d_lr=0", "algorithm.d_lr"),
                                          ("loss=ce", "loss=kd")])
def test_bad_config_fails_before_training(override, key, compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=adversarial", override]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cell" / "checkpoints").exists()
    assert not (tmp_path / "cache" / "teachers").exists()
