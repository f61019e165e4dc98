"""algorithm=federated: FedAvg arithmetic, rounds on tiny digits, resume per round."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.algorithms import federated_round
from kdrun.algorithms.fedavg import fedavg, select_clients
from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell
from kdrun.models import create_model

# 2 clients of ~200 digits each, 16x16 inputs: a round takes a few seconds on 2 cores
FED = [*TINY, "algorithm=federated", "data.max_train=450", "data.image_size=16",
       "data.max_test=200", "data.partition=iid", "algorithm.local_epochs=2",
       "algorithm.server_epochs=1"]


def test_fedavg_of_identical_clients_is_the_client():
    state = create_model("resnet8", num_classes=10, in_chans=1).state_dict()
    averaged = fedavg([state, state, state], [1, 5, 2])
    assert all(torch.equal(averaged[k], v) for k, v in state.items())


def test_fedavg_weighs_clients_by_samples():
    torch.manual_seed(0)
    a = create_model("resnet8", num_classes=10, in_chans=1).state_dict()
    b = {k: v + 1 if v.is_floating_point() else v + 7 for k, v in a.items()}
    averaged = fedavg([a, b], [1, 3])
    for key, value in a.items():
        if value.is_floating_point():
            assert torch.allclose(averaged[key], 0.25 * value + 0.75 * b[key], atol=1e-6)
        else:  # counters (num_batches_tracked) are not averaged
            assert torch.equal(averaged[key], value)


def test_client_draw_is_seeded_per_round():
    assert select_clients(4, None, 0, 1) == [0, 1, 2, 3]
    draws = [select_clients(10, 3, 0, r) for r in range(1, 6)]
    assert all(len(d) == 3 and d == sorted(d) for d in draws)
    assert draws == [select_clients(10, 3, 0, r) for r in range(1, 6)] and len(set(map(tuple, draws))) > 1


def test_distillation_on_two_clients_improves_over_its_first_round(compose_cfg, tmp_path):
    overrides = [*FED, "algorithm.rounds=4", "loss=kd", "algorithm.target_top1=30"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4] and result["epochs_done"] == 4
    assert rounds[-1]["test_top1"] > rounds[0]["test_top1"]
    assert result["student_top1"] == rounds[-1]["test_top1"]
    assert result["val_top1"] == max(r["val_top1"] for r in rounds)
    reached = [r["round"] for r in rounds if r["test_top1"] >= 30]
    assert result["rounds_to_target"] == (reached[0] if reached else None)
    assert all(r["clients"] == [0, 1] and {"fedavg_test_top1", "ensemble_test_top1"} <= set(r)
               for r in rounds)
    lines = [json.loads(x) for x in (tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2, 3, 4] and lines[-1]["test_top1"] == rounds[-1]["test_top1"]
    assert lines[-1]["rounds_to_target"] == result["rounds_to_target"]
    stats = json.loads((tmp_path / "cell" / "partitions.json").read_text())
    assert stats["public"]["samples"] == 45 and sum(p["samples"] for p in stats["parts"]) == 405
    assert not list((tmp_path / "cell" / "checkpoints").glob("round_*/**/*.pt"))  # kept small


def run_rounds(compose_cfg, cell, overrides):
    return run_cell(compose_cfg(overrides), cell, overrides)


def test_a_killed_cell_resumes_at_its_last_round(compose_cfg, tmp_path, monkeypatch):
    overrides = [*FED, "algorithm.rounds=2", "algorithm.local_epochs=1", "loss=[sp,kd]"]
    straight = run_rounds(compose_cfg, tmp_path / "straight", overrides)

    real = federated_round.train_client
    def dies_in_round_2(cell, server, data, folder, desc):
        if desc == "round 2 client 1":
            raise KeyboardInterrupt("killed")
        return real(cell, server, data, folder, desc)

    monkeypatch.setattr(federated_round, "train_client", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        run_rounds(compose_cfg, tmp_path / "killed", overrides)
    assert (tmp_path / "killed" / "checkpoints" / "round_002" / "client_0" / "last.pt").is_file()
    monkeypatch.setattr(federated_round, "train_client", real)
    resumed = run_rounds(compose_cfg, tmp_path / "killed", overrides)
    assert resumed["resumed_from"] == 1
    timing = ("round_s", "wall_s")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    assert strip(resumed["rounds"]) == strip(straight["rounds"])
    for key in ("student_top1", "best_student_top1", "val_top1"):
        assert resumed[key] == straight[key]


def test_fedavg_aggregation_with_a_client_sample(compose_cfg, tmp_path):
    overrides = [*FED, "algorithm.rounds=2", "algorithm.local_epochs=1", "loss=ce",
                 "algorithm.aggregation=fedavg", "data.num_partitions=3",
                 "algorithm.clients_per_round=2", "data.partition=dirichlet"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert [len(r["clients"]) for r in result["rounds"]] == [2, 2]
    assert "fedavg_test_top1" not in result["rounds"][0] and result["partition"] == "dirichlet"
    assert result["teacher"] is None and result["rounds_to_target"] is None


@pytest.mark.parametrize("extra, message", [
    (["algorithm.aggregation=mean"], "algorithm.aggregation=mean"),
    (["algorithm.aggregation=fedavg"], "algorithm.aggregation=fedavg has no teacher"),
    (["loss=ce"], "algorithm.aggregation=distill distils"),
    (["algorithm.public_fraction=0"], "algorithm.public_fraction=0"),
    (["algorithm.clients_per_round=3"], "algorithm.clients_per_round=3"),
    (["algorithm.rounds=0"], "algorithm.rounds=0"),
    (["algorithm.server_optim.name=lbfgs"], "algorithm.server_optim"),
    (["algorithm.target_top1=120"], "algorithm.target_top1=120"),
    (["student.partition=0"], "student.partition is not read"),
    (["data.partition=halves"], "data.partition=halves"),
    (["loss=simkd"], "loss=simkd reuses parts of one teacher"),
])
def test_bad_config_fails_before_training(compose_cfg, tmp_path, extra, message):
    overrides = [*FED, *extra]
    with pytest.raises(ConfigError, match=message):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cell" / "checkpoints").exists()
