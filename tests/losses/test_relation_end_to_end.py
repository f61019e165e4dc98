"""Relation methods through the engine on TINY digits: crd with its memory bank (resumed
exactly from last.pt after an interruption), crd with the queue next to kd, and fsp's
initialisation stage. One teacher is trained for the whole module and then cached."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY, compose_config

from kdrun.data import build_data
from kdrun.engine import loop
from kdrun.engine.cell import run_cell

CRD_SMALL = ["loss.crd.num_negatives=64"]


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("teacher-cache")


def compose(overrides, tmp_path, cache):
    cfg = compose_config(overrides, tmp_path)
    cfg.paths.cache_dir = str(cache)                 # share the trained teacher across tests
    return cfg


def metrics(cell, name="metrics.jsonl"):
    return [json.loads(line) for line in (cell / name).read_text().splitlines()]


def without_time(lines):
    return [{k: v for k, v in line.items() if k != "epoch_s"} for line in lines]


def test_crd_memory_bank_run_resumes_exactly(tmp_path, teacher_cache, monkeypatch):
    overrides = [*TINY, "loss=crd", *CRD_SMALL]
    straight = run_cell(compose(overrides, tmp_path, teacher_cache), tmp_path / "straight", overrides)

    real_epoch = loop.train_epoch

    def interrupt_second_epoch(objective, step, data, optimizer, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption after epoch 1")
        return real_epoch(objective, step, data, optimizer, epoch, *args)

    monkeypatch.setattr(loop, "train_epoch", interrupt_second_epoch)
    cell = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_cell(compose(overrides, tmp_path, teacher_cache), cell, overrides)
    assert torch.load(cell / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    resumed = run_cell(compose(overrides, tmp_path, teacher_cache), cell, overrides)

    assert resumed["resumed_from"] == 1 and straight["resumed_from"] == 0
    for key in ("student_top1", "best_student_top1", "val_top1"):
        assert resumed[key] == straight[key]
    assert without_time(metrics(cell)) == without_time(metrics(tmp_path / "straight"))
    assert all("loss/crd" in line for line in metrics(cell))
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(cell / "checkpoints" / "last.pt", weights_only=True)["model"]
    bank = {k for k in a if k.startswith("losses.crd.")}
    assert {"losses.crd.memory.student", "losses.crd.memory.teacher", "losses.crd.z_student"} <= bank
    assert all(torch.equal(a[k], b[k]) for k in bank)             # buffers restored from last.pt
    cfg = compose(overrides, tmp_path, teacher_cache)
    num_train = build_data(cfg.data, cfg.seed).train.num_samples
    assert a["losses.crd.memory.student"].shape == (num_train, 128)   # one row per training sample
    written = (a["losses.crd.memory.student"].norm(dim=1) - 1).abs() < 1e-5   # unit rows: seen samples
    assert written.sum() >= num_train // 32 * 32                     # every full batch wrote its rows


def test_crd_queue_with_kd_logs_both_terms(tmp_path, teacher_cache):
    overrides = [*TINY, "loss=[crd,kd]", "loss.crd.negatives=queue", "loss.crd.queue_size=50"]
    result = run_cell(compose(overrides, tmp_path, teacher_cache), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["loss"] == ["crd", "kd"]
    for line in metrics(tmp_path / "cell"):
        assert {"loss/ce", "loss/crd", "loss/kd"} <= set(line)
    state = torch.load(tmp_path / "cell" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state["losses.crd.memory.student"].shape == (50, 128)     # fixed size, not num_train
    assert "losses.crd.memory.pointer" in state


def test_fsp_runs_its_initialisation_stage_then_trains_without_it(tmp_path, teacher_cache):
    overrides = [*TINY, "loss=fsp", "loss.fsp.init_epochs=1"]
    result = run_cell(compose(overrides, tmp_path, teacher_cache), tmp_path / "cell", overrides)
    assert result["status"] == "completed"
    stage = metrics(tmp_path / "cell", "metrics.pretrain_fsp.jsonl")
    assert len(stage) == 1 and "loss/fsp" in stage[0] and "loss/ce" not in stage[0]
    assert all("loss/fsp" not in line and "loss/ce" in line for line in metrics(tmp_path / "cell"))
