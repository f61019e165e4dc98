"""graph (MHGD): the attention graph is learned on the teacher, then frozen and matched."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY
from omegaconf import OmegaConf

from kdrun.algorithms.graph import GraphConfig
from kdrun.losses.relation.mhgd import GraphLoss
from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell
from kdrun.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def models():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 32, 32)
    student, teacher = create_model("resnet8", 10, 1), create_model("resnet14", 10, 1)
    return x, student, teacher


def graph_loss(student_out, teacher_out, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(GraphConfig), overrides)
    return GraphLoss(cfg, student_out, teacher_out, mha_epochs=1)


def test_graph_is_zero_when_the_student_is_the_teacher(models):
    x, student, teacher = models
    t_out = teacher(x)
    loss = graph_loss(t_out, t_out)
    assert loss(t_out, t_out, None)["graph"].item() == 0.0
    assert loss(student(x), t_out, None)["graph"].item() > 0.0


def test_attention_learns_on_the_teacher_then_teaches_frozen(models):
    x, student, teacher = models
    with torch.no_grad():
        t_out = teacher(x)
    s_out = student(x)
    loss = graph_loss(s_out, t_out)
    mha = loss.pretrain_parameters(student)
    assert len(mha) > 0

    # phase 1: the estimator's loss trains the attention graph (and nothing of the student)
    optimizer = torch.optim.SGD(mha, lr=0.1)
    first = None
    for _ in range(8):
        value = loss.pretrain_terms(s_out, t_out, None)["graph_mha"]
        optimizer.zero_grad()
        value.backward(retain_graph=True)
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in loss.attention.parameters())
        optimizer.step()
        first = value.item() if first is None else first
    assert value.item() < first
    assert all(p.grad is None for p in student.parameters())

    # phase 2: the student's graph term reaches the student, the attention stays frozen
    loss.zero_grad()
    loss(s_out, t_out, None)["graph"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in loss.attention.parameters())


def test_graph_run_logs_both_phases_and_keeps_the_learned_graph(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=graph", "algorithm.mha_epochs=1"]
    cell = tmp_path / "cell"
    result = run_cell(compose_cfg(overrides), cell, overrides)
    assert result["status"] == "completed" and result["graph_pairs"] == 2
    assert result["graph_mha_epochs"] == 1 and result["teacher_source"] == "trained"

    mha = [json.loads(x) for x in (cell / "metrics.pretrain_graph.jsonl").read_text().splitlines()]
    main = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert len(mha) == 1 and mha[0]["loss/graph_mha"] > 0
    assert len(main) == 2 and all(r["loss/graph"] > 0 and "loss/kd" in r for r in main)

    learned = torch.load(cell / "checkpoints" / "pretrain_graph" / "last.pt", weights_only=True)
    final = torch.load(cell / "checkpoints" / "last.pt", weights_only=True)
    keys = [k for k in final["model"] if k.startswith("losses.graph.attention.")]
    assert keys  # the attention is saved with the objective; distillation leaves it as learned
    for key in keys:
        saved_after_mha = learned["model"][key.replace("losses.graph.", "loss.")]
        assert torch.equal(saved_after_mha, final["model"][key])


def test_graph_bad_config_fails_before_training(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=graph", "algorithm.student_stages=[-1]",
                 "algorithm.teacher_stages=[-1]"]
    with pytest.raises(ConfigError, match="algorithm.student_stages"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()
