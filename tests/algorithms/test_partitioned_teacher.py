"""teacher.partition=i with the vanilla runner: the cached teacher trains on part i only."""

from __future__ import annotations

import json

import pytest
from helpers import TINY

from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell

ONE = [*TINY, "trainer.epochs=1", "data.image_size=16", "data.partition=dirichlet",
       "data.num_partitions=2"]


def test_a_teacher_trained_on_one_part_is_its_own_cache_entry(compose_cfg, tmp_path, monkeypatch):
    from kdrun.engine import teachers

    seen = []
    real = teachers.trainer

    def spying_trainer(*args, **kwargs):
        train = real(*args, **kwargs)

        def spy(model, teacher_cfg, data, ckpt_dir):
            seen.append(data.train.num_samples)
            return train(model, teacher_cfg, data, ckpt_dir)
        return spy

    monkeypatch.setattr(teachers, "trainer", spying_trainer)
    whole = run_cell(compose_cfg(ONE), tmp_path / "whole", ONE)
    part = run_cell(compose_cfg([*ONE, "teacher.partition=1"]), tmp_path / "part", ONE)
    assert seen[0] == 120 and 0 < seen[1] < 120  # the whole split, then part 1 only
    assert whole["teacher_key"] != part["teacher_key"] and part["teacher_source"] == "trained"
    entry = tmp_path / "cache" / "teachers" / f"resnet8-{part['teacher_key'][:16]}"
    assert json.loads((entry / "teacher.json").read_text())["partition"] == {
        "index": 1, "partition": "dirichlet", "num_partitions": 2, "dirichlet_beta": 0.5}


@pytest.mark.parametrize("extra, message", [
    (["data.partition=none", "teacher.partition=0"], "teacher.partition=0 needs partitioned data"),
    (["teacher.partition=2"], "teacher.partition=2 does not exist"),
])
def test_a_bad_teacher_partition_fails_before_training(compose_cfg, tmp_path, extra, message):
    overrides = [*ONE, *extra]
    with pytest.raises(ConfigError, match=message):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cell" / "metrics.jsonl").exists()
