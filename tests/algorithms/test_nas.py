"""nas: each trial is a KD cell checked against its budget; the optuna search writes a front."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, run_kdrun

from kdrun.algorithms.nas import check_budget
from kdrun.algorithms.nas_front import pareto_front
from kdrun.algorithms.nas_space import build_architecture
from kdrun.engine.cell import run_cell
from kdrun.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pareto_front_of_hand_made_points():
    points = [
        {"id": "a", "val_top1": 90.0, "student_params": 100, "latency_ms": 5.0},
        {"id": "b", "val_top1": 80.0, "student_params": 50, "latency_ms": 5.0},
        {"id": "c", "val_top1": 80.0, "student_params": 100, "latency_ms": 5.0},  # beaten by a, b
        {"id": "d", "val_top1": 70.0, "student_params": 60, "latency_ms": 1.0},   # fastest
        {"id": "e", "val_top1": 95.0, "student_params": 400, "latency_ms": 9.0},  # most accurate
        {"id": "f", "val_top1": None, "student_params": 10, "latency_ms": 0.1},   # untrained
        {"id": "g", "val_top1": 90.0, "student_params": 100, "latency_ms": 5.0},  # ties a
    ]
    assert [p["id"] for p in pareto_front(points)] == ["a", "b", "d", "e", "g"]
    two = {"val_top1": "max", "student_params": "min"}
    assert [p["id"] for p in pareto_front(points, two)] == ["a", "b", "e", "g"]


def test_budget_penalty_is_below_every_feasible_score():
    class Budget:
        max_params, max_latency_ms = 1000, 10.0

    inside = check_budget(800, 9.0, Budget)
    assert inside["within"] and inside["penalty"] == 0.0
    over = check_budget(1500, 12.0, Budget)  # 50% over in params, 20% in latency
    assert not over["within"] and over["penalty"] == -50.0
    assert check_budget(1100, 1.0, Budget)["penalty"] > over["penalty"]  # closer is better


def test_families_scale_with_depth_and_width():
    def size(family, depth, width):
        model = build_architecture(family, depth, width, num_classes=10, in_chans=1)
        return sum(p.numel() for p in model.parameters())

    for family in ("resnet_cifar", "shufflenetv2", "timm_resnet"):
        assert size(family, 1, 0.5) < size(family, 2, 0.5) < size(family, 2, 1.0)
    paper = sum(p.numel() for p in create_model("shufflenetv2", 10, 1).parameters())
    assert size("shufflenetv2", 3, 1.0) == paper  # depth 3, width 1: the paper's model


def test_over_budget_trial_is_recorded_untrained(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=nas", "algorithm.family=resnet_cifar", "algorithm.width=2",
                 "algorithm.max_params=50000", "algorithm.latency_repeats=2"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["student"] == "resnet_cifar_d1_w2"
    assert result["student_params"] > 50000 and result["latency_ms"] > 0
    assert result["budget"]["within"] is False and result["objective"] < 0
    assert result["val_top1"] is None and not (tmp_path / "cell" / "checkpoints").exists()


def test_optuna_search_writes_trials_and_a_front(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hparams_search=nas", *TINY, "trainer.epochs=1", "trainer.threads=1",
            "algorithm.latency_repeats=2",
            "algorithm.max_params=60000",  # some trials over budget (not trained), some within
            "hydra.sweeper.n_trials=3", f"paths.output_dir={tmp_path}",
            f"hydra.sweep.dir={sweep}"]
    run_kdrun(args, cwd=tmp_path, check=True, timeout=300)
    cells = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(cells) == 3 and all(c["status"] == "completed" for c in cells)
    assert all(c["algorithm"] == "nas" and c["latency_ms"] > 0 for c in cells)
    front = json.loads((sweep / "pareto.json").read_text())
    assert len(front["trials"]) == 3 and front["front"]
    trained = [t for t in front["trials"] if t["val_top1"] is not None]
    assert 0 < len(trained) < 3  # TPE's seeded first draws: one small resnet, two over budget
    for t in front["front"]:
        assert t["budget"]["within"] and t in trained
    for t in front["trials"]:  # the score optuna saw: val_top1 within budget, a penalty beyond
        expected = t["val_top1"] if t["budget"]["within"] else t["budget"]["penalty"]
        assert t["objective"] == expected
    assert (sweep / "optimization_results.yaml").is_file()
