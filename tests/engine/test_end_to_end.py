"""A tiny job end to end, in process: every output DESIGN.md promises, and the teacher cache."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.engine.cell import run_cell
from kdrun.models import create_model
from kdrun.models.weights import load_weights

RESULT_KEYS = {"status", "student_top1", "best_student_top1", "val_top1", "teacher_top1",
               "teacher_source", "teacher", "student", "loss", "scheme", "algorithm", "data",
               "epochs_done", "wall_s", "seed", "overrides"}


def test_tiny_kd_job_writes_every_output(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=[at,kd]"]
    cell = tmp_path / "cell"
    result = run_cell(compose_cfg(overrides), cell, overrides)

    saved = json.loads((cell / "result.json").read_text())
    assert RESULT_KEYS <= set(saved)
    assert saved["status"] == "completed" and saved["epochs_done"] == 2
    assert saved["teacher_source"] == "trained" and saved["teacher"] == "resnet8"
    assert saved["loss"] == ["at", "kd"] and saved["overrides"] == overrides
    for key in ("student_top1", "best_student_top1", "val_top1", "teacher_top1"):
        assert 0.0 <= saved[key] <= 100.0
    assert saved == {k: v for k, v in result.items() if k != "skipped"}

    lines = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:  # every term logged by name, plus accuracies and time
        assert {"loss", "loss/ce", "loss/kd", "loss/at", "train_top1", "val_top1", "test_top1",
                "lr", "epoch_s"} <= set(line)
    # the student's loss is the weighted sum: CE gets 1 - alpha
    best_epoch = max(lines, key=lambda r: r["val_top1"])
    assert saved["best_student_top1"] == best_epoch["test_top1"]
    assert saved["student_top1"] == lines[-1]["test_top1"]

    last = torch.load(cell / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and {"model", "optimizer", "scheduler", "rng"} <= set(last)
    assert not any(k.startswith("teacher") for k in last["model"])  # the frozen teacher is not saved
    student = create_model("resnet8", num_classes=10, in_chans=1)
    load_weights(student, cell / "checkpoints" / "best.pt")  # best.pt is a usable model file


def test_teacher_is_trained_once_then_cached_or_given(compose_cfg, tmp_path):
    first = run_cell(compose_cfg(TINY), tmp_path / "a", TINY)
    second = run_cell(compose_cfg([*TINY, "loss.kd.temperature=2"]), tmp_path / "b", TINY)
    assert (first["teacher_source"], second["teacher_source"]) == ("trained", "cache")
    assert first["teacher_top1"] == second["teacher_top1"]
    assert first["teacher_key"] == second["teacher_key"]
    other_seed = run_cell(compose_cfg([*TINY, "seed=1"]), tmp_path / "c", TINY)
    assert other_seed["teacher_source"] == "trained" and other_seed["teacher_key"] != first["teacher_key"]

    weights = tmp_path / "a" / "checkpoints" / "best.pt"  # any trained model can teach
    given = run_cell(compose_cfg([*TINY, f"teacher.checkpoint={weights}"]), tmp_path / "d", TINY)
    assert given["teacher_source"] == "checkpoint" and given["teacher_path"] == str(weights)


def test_ce_trains_a_model_alone(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=ce", "teacher.name=does_not_matter"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["teacher"] == "does_not_matter"  # the configured pair, for tables
    assert result["teacher_source"] is None
    assert result["teacher_top1"] is None
    assert not (tmp_path / "cache" / "teachers").exists()
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss/ce" in line and "loss/kd" not in line


def test_completed_cell_is_skipped_on_rerun(compose_cfg, tmp_path):
    cfg = compose_cfg(TINY)
    run_cell(cfg, tmp_path / "cell", TINY)
    stamp = (tmp_path / "cell" / "result.json").stat().st_mtime_ns
    again = run_cell(cfg, tmp_path / "cell", TINY)
    assert again["skipped"] and (tmp_path / "cell" / "result.json").stat().st_mtime_ns == stamp


def test_seed_fixes_everything(compose_cfg, tmp_path):
    a = run_cell(compose_cfg(TINY), tmp_path / "a", TINY)
    b = run_cell(compose_cfg(TINY), tmp_path / "b", TINY)
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "epoch_s"}  # noqa: E731
    assert [strip(x) for x in la] == [strip(x) for x in lb]
    assert a["student_top1"] == b["student_top1"]


def test_a_failing_job_is_recorded(compose_cfg, tmp_path, monkeypatch):
    from kdrun.engine import distiller

    def boom(self, batch):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(distiller.Distiller, "forward", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        run_cell(compose_cfg([*TINY, "loss=ce"]), tmp_path / "cell", TINY)
    saved = json.loads((tmp_path / "cell" / "result.json").read_text())
    assert saved["status"] == "failed" and "simulated failure" in saved["error"]
