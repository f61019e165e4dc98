"""scheme=self: BAN writes one result (and checkpoint) per generation and resumes inside a
generation; BYOT's exits learn from the detached deepest classifier; TF-KD's virtual
teacher; CS-KD's same-class partners; what cannot apply fails before training."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY, interrupt_checkpoint

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.losses import build_losses
from kdrun.models import create_model
from kdrun.schemes.byot import DeepSupervision, Exit, exit_loss_config
from kdrun.schemes.cskd import ClassPairedLoader, ClassPartners
from kdrun.schemes.tfkd import virtual_logits

SELF = [*TINY, "scheme=self", "trainer.epochs=1"]


def metrics(cell, name="metrics.jsonl"):
    return [json.loads(line) for line in (cell / name).read_text().splitlines()]


def test_ban_writes_one_result_per_generation(compose_cfg, tmp_path):
    overrides = [*SELF, "scheme.generations=2", "loss=kd"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    gens = result["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    for g in gens:
        assert 0 <= g["student_top1"] <= 100 and (tmp_path / "cell").joinpath(g["checkpoint"]).is_file()
    assert result["student_top1"] == gens[-1]["student_top1"]         # THE student: the last one
    assert result["previous_generation_top1"] == gens[1]["best_student_top1"]
    assert result["teacher"] is None and result["teacher_source"] is None
    assert "loss/kd" not in metrics(tmp_path / "cell", "metrics.gen0.jsonl")[0]  # labels only
    assert "loss/kd" in metrics(tmp_path / "cell", "metrics.gen1.jsonl")[0]
    assert "loss/kd" in metrics(tmp_path / "cell")[0]                  # the last generation
    assert not (tmp_path / "cache" / "teachers").exists()

    baseline = [*TINY, "loss=ce", "trainer.epochs=1"]                 # generation 0 is the CE run
    plain = run_cell(compose_cfg(baseline), tmp_path / "ce", baseline)
    assert plain["student_top1"] == gens[0]["student_top1"]


def test_ban_resumes_inside_a_generation(compose_cfg, tmp_path, monkeypatch):
    overrides = [*SELF, "trainer.epochs=2", "scheme.generations=1", "loss=[kd,sp]"]
    straight = run_cell(compose_cfg(overrides), tmp_path / "straight", overrides)
    restore = interrupt_checkpoint(  # killed in generation 1, before its epoch-2 checkpoint
        monkeypatch, lambda obj, path: path.name == "last.pt" and path.parent.name == "gen1"
        and obj["epoch"] == 2)
    with pytest.raises(KeyboardInterrupt):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    restore()
    resumed = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert resumed["resumed_from"] == 1
    strip = lambda gens: [{k: v for k, v in g.items() if k not in ("checkpoint", "wall_s")}  # noqa: E731
                          for g in gens]
    assert strip(resumed["generations"]) == strip(straight["generations"])


def test_byot_exits_learn_from_the_detached_deepest_classifier(compose_cfg):
    cfg = compose_cfg(["loss=[kd,at]"])
    student = create_model("resnet8", num_classes=10, in_chans=1)
    x = torch.randn(8, 1, 32, 32)
    deep = student.eval()(x)
    exit_ = Exit(16, 32, deep.embedding.shape[1], 8, 10)
    shallow = exit_.eval()(deep.features[1])
    assert shallow.features[0].shape == deep.features[-1].shape       # down to the deepest map
    loss_cfg = exit_loss_config(cfg.loss)
    assert list(loss_cfg.at.student_stages) == [-1] and list(cfg.loss.at.student_stages) == [-3, -2, -1]
    losses = {1: build_losses(loss_cfg, shallow, deep)}
    objective = DeepSupervision(student.train(), {1: exit_.train()}, losses, 0.7, 0.03)
    terms, _ = objective(Batch(x, torch.arange(8) % 10, torch.arange(8)))
    assert set(terms) == {"ce", "exit1/ce", "exit1/kd", "exit1/at", "exit1/hint"}
    teaching = terms["exit1/kd"] + terms["exit1/at"] + terms["exit1/hint"]
    deepest_only = [*student.stages[-1].parameters(), *student.fc.parameters()]
    grads = torch.autograd.grad(teaching, deepest_only, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads)                               # the teacher is detached
    assert torch.autograd.grad(terms["exit1/kd"], exit_.fc.weight)[0].abs().sum() > 0


def test_byot_runs_with_kd_at_sp_and_reports_each_exit(compose_cfg, tmp_path):
    overrides = [*SELF, "scheme.method=byot", "loss=[kd,at,sp]"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert [e["exit"] for e in result["exits"]] == [1, 2]            # resnet8: after stages 1, 2
    line = metrics(tmp_path / "cell")[0]
    assert {"loss/ce", "loss/exit1/kd", "loss/exit2/sp", "loss/exit2/hint", "exit1/val_top1",
            "exit2/test_top1", "ensemble/test_top1"} <= set(line)
    assert result["exits"][0]["student_top1"] == line["exit1/test_top1"]
    assert result["student_top1"] == line["test_top1"]               # the deepest classifier


def test_tfkd_virtual_teacher(compose_cfg, tmp_path):
    probs = virtual_logits(torch.tensor([3, 0]), 10, 0.9).softmax(1)
    assert torch.allclose(probs[0, 3], torch.tensor(0.9)) and torch.allclose(probs[1, 1], torch.tensor(0.1 / 9))
    overrides = [*SELF, "scheme.method=tfkd", "loss=kd"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and "loss/kd" in metrics(tmp_path / "cell")[0]


def test_cskd_pairs_each_sample_with_another_of_its_class():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])                       # class 2, 3: one sample each
    partners = ClassPartners(labels)
    index = torch.arange(7).repeat(20)
    drawn = partners.draw(index, torch.Generator().manual_seed(0))
    assert torch.equal(labels[drawn], labels[index])
    alone = (index == 3) | (index == 6)
    assert torch.equal(drawn[alone], index[alone]) and (drawn[~alone] != index[~alone]).all()
    assert set(drawn[index == 0].tolist()) == {2, 5}                    # every classmate is drawn


def test_cskd_batches_are_seeded_by_epoch(compose_cfg, tmp_path):
    from kdrun.data import build_data

    cfg = compose_cfg(SELF)
    train = build_data(cfg.data, cfg.seed).train
    paired = ClassPairedLoader(train, seed=0)
    epochs = []
    for epoch in (0, 0, 1):
        paired.set_epoch(epoch)
        epochs.append([b.pair.index for b in paired])
    assert all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[2]))
    batch = next(iter(paired))
    assert torch.equal(batch.pair.y, batch.y) and batch.to("cpu").pair is not None

    overrides = [*SELF, "scheme.method=cskd", "loss=[kd,sp]", "loss.kd.alpha=0.5"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert {"loss/ce", "loss/kd", "loss/sp"} <= set(metrics(tmp_path / "cell")[0])
    assert result["scheme_method"] == "cskd"


@pytest.mark.parametrize("overrides,message", [
    (["scheme.method=distill"], "scheme.method=distill"),
    (["scheme.generations=0"], "scheme.generations=0"),
    (["scheme.method=tfkd", "scheme.correct_prob=0.05"], r"scheme.correct_prob=0.05"),
    (["scheme.method=tfkd", "loss=[kd,at]"], "logits only"),
    (["scheme.method=byot", "scheme.exits=[3]"], r"scheme.exits=\[3\]"),
    (["scheme.method=byot", "loss=srd"], "classifier of a trained, frozen teacher"),
    (["scheme.method=cskd", "loss=ab"], "stage against a fixed, trained teacher"),
    (["loss=at", "loss.at.student_stages=[7]", "loss.at.teacher_stages=[7]"],
     r"loss.at.student_stages=\[7\]"),                               # ban: before generation 0
])
def test_what_cannot_apply_fails_before_training(compose_cfg, tmp_path, overrides, message):
    args = [*SELF, *overrides]
    with pytest.raises(ConfigError, match=message):
        run_cell(compose_cfg(args), tmp_path / "cell", args)
    assert not (tmp_path / "cell" / "checkpoints").exists()
