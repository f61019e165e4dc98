"""scheme=online: DML peers learn from each other's detached outputs (both update, both are
logged and reported); ONE branches share a trunk and learn from a gated ensemble; losses
that cannot apply fail before training."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY, compose_config, interrupt_checkpoint

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.losses import build_losses
from kdrun.models import create_model
from kdrun.models.weights import read_state_dict
from kdrun.schemes.dml import MutualLearning, pair_key
from kdrun.schemes.one import Gate, NativeEnsemble, share_trunk

ONLINE = [*TINY, "scheme=online", "trainer.epochs=2"]


def metrics(cell, name="metrics.jsonl"):
    return [json.loads(line) for line in (cell / name).read_text().splitlines()]


def tiny_batch(n=8):
    gen = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 1, 32, 32, generator=gen), torch.arange(n) % 10, torch.arange(n))


@pytest.fixture(scope="module")
def dml_run(tmp_path_factory):
    """One uninterrupted 2-peer DML cell, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("dml")
    return run_cell(compose_config(ONLINE, root), root / "cell", ONLINE), root


def test_dml_two_peers_update_both_and_log_both(dml_run):
    result, tmp_path = dml_run
    assert result["status"] == "completed" and result["scheme_method"] == "dml"
    assert result["teacher"] is None and result["teacher_top1"] is None
    assert not (tmp_path / "cache" / "teachers").exists()          # no teacher is trained

    lines = metrics(tmp_path / "cell")
    assert len(lines) == 2
    for line in lines:                                             # each peer's terms and accuracy
        assert {"loss/peer0/ce", "loss/peer0/kd", "loss/peer1/ce", "loss/peer1/kd",
                "peer0/val_top1", "peer0/test_top1", "peer1/val_top1", "peer1/test_top1"} <= set(line)
        assert line["peer0/test_top1"] == line["test_top1"]        # peer 0 is THE student
    peers = result["peers"]
    assert [p["name"] for p in peers] == ["resnet8", "resnet8"]
    assert peers[1]["student_top1"] == lines[-1]["peer1/test_top1"]
    assert peers[1]["val_top1"] == max(line["peer1/val_top1"] for line in lines)
    for key in ("student_top1", "best_student_top1", "val_top1"):
        assert peers[0][key] == result[key]

    torch.manual_seed(0)                                           # the peers' initialisations
    initial = [create_model("resnet8", num_classes=10, in_chans=1) for _ in range(2)]
    assert not torch.equal(initial[0].fc.weight, initial[1].fc.weight)  # peers start apart
    for i, peer in enumerate(peers):                               # and both were trained
        trained = read_state_dict(peer["checkpoint"])
        assert not torch.equal(trained["fc.weight"], initial[i].fc.weight)
        model = create_model("resnet8", num_classes=10, in_chans=1)
        model.load_state_dict(trained)                             # a standalone model file


def test_without_a_transfer_method_peer_0_is_the_plain_student(compose_cfg, tmp_path):
    """loss=ce couples nothing: peer 0 trains exactly as the offline CE student does."""
    online, plain = [*ONLINE, "trainer.epochs=1", "loss=ce"], [*TINY, "trainer.epochs=1", "loss=ce"]
    a = run_cell(compose_cfg(online), tmp_path / "online", online)
    b = run_cell(compose_cfg(plain), tmp_path / "plain", plain)
    assert a["student_top1"] == b["student_top1"] and a["val_top1"] == b["val_top1"]
    peer0 = read_state_dict(tmp_path / "online" / "checkpoints" / "peer0.pt")
    student = read_state_dict(tmp_path / "plain" / "checkpoints" / "best.pt")
    assert all(torch.equal(peer0[k], student[k]) for k in student)


def test_a_peer_learns_only_from_the_others_detached_outputs(compose_cfg):
    cfg = compose_cfg(["loss=[kd,at]"])
    peers = [create_model(name, num_classes=10, in_chans=1) for name in ("resnet8", "wrn_16_1")]
    probes = [peer.eval()(tiny_batch().x) for peer in peers]
    losses = {pair_key(i, j): build_losses(cfg.loss, probes[i], probes[j])
              for i in range(2) for j in range(2) if i != j}
    objective = MutualLearning([p.train() for p in peers], losses, ce_weight=0.1)
    terms, logits = objective(tiny_batch())
    assert set(terms) == {f"peer{i}/{t}" for i in (0, 1) for t in ("ce", "kd", "at")}
    assert objective.student is peers[0] and logits.shape == (8, 10)
    for i, j in ((0, 1), (1, 0)):                                  # gradients stay with the learner
        grads = torch.autograd.grad(terms[f"peer{i}/kd"] + terms[f"peer{i}/at"],
                                    list(peers[j].parameters()), allow_unused=True,
                                    retain_graph=True)
        assert all(g is None for g in grads)
        grads = torch.autograd.grad(terms[f"peer{i}/kd"], peers[i].fc.weight, retain_graph=True)
        assert grads[0].abs().sum() > 0


def test_heterogeneous_peers_compose_with_at_and_sp(compose_cfg, tmp_path):
    overrides = [*ONLINE, "trainer.epochs=1", "scheme.peers=[resnet8,wrn_16_1,resnet14]",
                 "loss=[kd,at,sp]"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["student"] == "resnet8"
    assert [p["name"] for p in result["peers"]] == ["resnet8", "wrn_16_1", "resnet14"]
    line = metrics(tmp_path / "cell")[0]
    assert {f"loss/peer{i}/{t}" for i in range(3) for t in ("kd", "at", "sp")} <= set(line)


def test_dml_resumes_exactly(compose_cfg, tmp_path, monkeypatch, dml_run):
    straight, straight_root = dml_run
    # killed after logging epoch 2, before its checkpoint
    restore = interrupt_checkpoint(monkeypatch, lambda obj, path: path.name == "last.pt"
                                   and obj["epoch"] == 2)
    with pytest.raises(KeyboardInterrupt):
        run_cell(compose_cfg(ONLINE), tmp_path / "cell", ONLINE)
    restore()
    resumed = run_cell(compose_cfg(ONLINE), tmp_path / "cell", ONLINE)
    assert resumed["resumed_from"] == 1
    strip = lambda lines: [{k: v for k, v in x.items() if k != "epoch_s"} for x in lines]  # noqa: E731
    assert strip(metrics(tmp_path / "cell")) == strip(metrics(straight_root / "cell"))
    drop = lambda peers: [{k: v for k, v in p.items() if k != "checkpoint"} for p in peers]  # noqa: E731
    assert drop(resumed["peers"]) == drop(straight["peers"])


def test_one_branches_share_the_trunk_and_learn_from_the_gated_ensemble(compose_cfg):
    torch.manual_seed(0)
    branches = [create_model("resnet8", num_classes=10, in_chans=1) for _ in range(3)]
    single = sum(p.numel() for p in branches[0].parameters())
    last_stage = sum(p.numel() for p in branches[0].stages[-1].parameters())
    head = sum(p.numel() for p in branches[0].fc.parameters())
    trunk_index = share_trunk(branches, 1, "resnet8")
    assert trunk_index == 2 and branches[2].stem is branches[0].stem
    assert branches[1].stages[1] is branches[0].stages[1]
    assert branches[1].stages[2] is not branches[0].stages[2]
    cfg = compose_cfg(["loss=kd"])
    probe = branches[0].eval()(tiny_batch().x)
    gate = Gate(probe.features[trunk_index].shape[1], 3)
    losses = [build_losses(cfg.loss, probe, probe) for _ in branches]
    objective = NativeEnsemble([b.train() for b in branches], trunk_index, gate, losses)
    gate_size = sum(p.numel() for p in gate.parameters())
    assert sum(p.numel() for p in objective.parameters()) == single + 2 * (last_stage + head) + gate_size
    terms, _ = objective(tiny_batch())
    assert {"ensemble/ce", "branch0/ce", "branch0/kd", "branch2/kd"} <= set(terms)
    weights = gate(probe.features[trunk_index])
    assert torch.allclose(weights.sum(1), torch.ones(8))
    # the ensemble teaches detached: a branch's kd term does not move the gate
    grads = torch.autograd.grad(terms["branch1/kd"], list(gate.parameters()), allow_unused=True,
                                retain_graph=True)
    assert all(g is None for g in grads)


def test_one_runs_and_reports_branches_and_ensemble(compose_cfg, tmp_path):
    overrides = [*ONLINE, "trainer.epochs=1", "scheme.method=one", "scheme.peers=3"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert len(result["peers"]) == 3 and 0 <= result["ensemble"]["student_top1"] <= 100
    assert {"ensemble/val_top1", "peer2/test_top1"} <= set(metrics(tmp_path / "cell")[0])


@pytest.mark.parametrize("overrides,message", [
    (["scheme.peers=1"], "at least 2 peers"),
    (["scheme.peers=[resnet8,no_such_net]"], "scheme.peers[1]"),
    (["scheme.method=mutual"], "scheme.method=mutual"),
    (["scheme.method=one", "scheme.peers=[resnet8,wrn_16_1]"], "give a count"),
    (["scheme.method=one", "loss=[kd,at]"], "logits only"),
    (["scheme.method=one", "scheme.branch_stages=4"], "scheme.branch_stages=4"),
    (["loss=simkd"], "classifier of a trained, frozen teacher"),
    (["loss=fitnet"], "stage against a fixed, trained teacher"),
])
def test_what_cannot_apply_fails_before_training(compose_cfg, tmp_path, overrides, message):
    args = [*ONLINE, *overrides]
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_cell(compose_cfg(args), tmp_path / "cell", args)
    assert not (tmp_path / "cell" / "checkpoints").exists()
