"""Response methods in a tiny job end to end: every term logged by name in metrics.jsonl."""

from __future__ import annotations

import json

from helpers import TINY

from kdrun.engine.cell import run_cell


def epochs(cell):
    return [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]


def test_dkd_then_dist_with_kd_log_every_term(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=dkd"]
    first = run_cell(compose_cfg(overrides), tmp_path / "dkd", overrides)
    assert first["status"] == "completed" and first["loss"] == ["dkd"]
    for line in epochs(tmp_path / "dkd"):
        assert {"loss/ce", "loss/dkd_tckd", "loss/dkd_nckd"} <= set(line)
    assert first["epochs_done"] == 2

    overrides = [*TINY, "loss=[dist,kd]"]
    second = run_cell(compose_cfg(overrides), tmp_path / "dist_kd", overrides)
    assert second["status"] == "completed" and second["teacher_source"] == "cache"
    for line in epochs(tmp_path / "dist_kd"):
        assert {"loss/ce", "loss/dist_inter", "loss/dist_intra", "loss/kd"} <= set(line)


def test_ls_trains_without_a_teacher(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=ls"]
    result = run_cell(compose_cfg(overrides), tmp_path / "ls", overrides)
    # the configured teacher names the cell's row; nothing was trained or loaded for it
    assert result["status"] == "completed" and result["teacher_source"] is None
    assert result["teacher_top1"] is None
    assert not (tmp_path / "cache" / "teachers").exists()
    for line in epochs(tmp_path / "ls"):
        assert {"loss/ce", "loss/ls"} <= set(line) and "loss/kd" not in line
