"""kdrun's own files torn by a crash or a full disk: set aside as *.corrupt and rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY

from kdrun.engine.cell import run_cell


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def metric_lines(cell):
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "epoch_s"} for line in lines]


def same_numbers(a, b):
    for key in ("student_top1", "best_student_top1", "val_top1", "teacher_top1", "epochs_done"):
        assert a[key] == b[key], key


def test_truncated_last_pt_is_set_aside_and_the_run_restarts(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg(TINY)
    cell = tmp_path / "cell"
    first = run_cell(cfg, cell, [])
    straight = metric_lines(cell)
    truncate(cell / "checkpoints" / "last.pt")
    (cell / "result.json").write_text(json.dumps({**first, "status": "running"}))

    again = run_cell(cfg, cell, [])
    assert (cell / "checkpoints" / "last.pt.corrupt").is_file()
    assert "corrupt" in caplog.text
    assert json.loads((cell / "result.json").read_text())["status"] == "completed"
    assert again["resumed_from"] == 0
    lines = metric_lines(cell)
    assert [line["epoch"] for line in lines] == list(range(1, cfg.trainer.epochs + 1))
    assert lines == straight
    same_numbers(first, again)


@pytest.mark.parametrize("torn", [["teacher.pt"], ["teacher.pt", "checkpoints/best.pt"],
                                  ["teacher.pt", "checkpoints/last.pt", "checkpoints/best.pt"]],
                         ids=["weights", "weights+best", "all"])
def test_corrupt_teacher_cache_entry_is_rebuilt(torn, compose_cfg, tmp_path):
    cfg = compose_cfg(TINY)
    first = run_cell(cfg, tmp_path / "a", [])
    entry, = (p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir())
    for name in torn:
        truncate(entry / name)

    second = run_cell(cfg, tmp_path / "b", [])
    assert second["teacher_source"] == "trained"
    assert (entry / "teacher.pt.corrupt").is_file()
    same_numbers(first, second)
    assert run_cell(cfg, tmp_path / "c", [])["teacher_source"] == "cache"  # rebuilt for good


def wrong_shape(path):
    np.save(path, np.zeros((1, 7, 10), np.float16))


@pytest.mark.parametrize("damage", [
    lambda entry: truncate(entry / "logits.npy"),
    lambda entry: truncate(entry / "embedding.npy"),
    lambda entry: wrong_shape(entry / "logits.npy"),
    lambda entry: (entry / "meta.json").write_text("{not json"),
], ids=["truncated-logits", "truncated-embedding", "wrong-shape", "unreadable-meta"])
def test_corrupt_output_cache_is_rebuilt(damage, compose_cfg, tmp_path, caplog):
    cfg = compose_cfg([*TINY, "loss=kd", "data.augment=false", "teacher.cache=on"])
    first = run_cell(cfg, tmp_path / "a", [])
    entry, = (p for p in (tmp_path / "cache" / "outputs").iterdir() if p.is_dir())
    damage(entry)

    second = run_cell(cfg, tmp_path / "b", [])
    assert first["teacher_cache"] and second["teacher_cache"]
    assert entry.with_name(entry.name + ".corrupt").is_dir()
    assert "corrupt" in caplog.text
    same_numbers(first, second)
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
