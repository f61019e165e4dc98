"""algorithm=multi_teacher on tiny digits: teachers cached once each, per-partition teachers,
a partition-trained student start, feature losses over one or the mean teacher."""

from __future__ import annotations

import json

import pytest
from helpers import TINY

from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell

MT = [*TINY, "algorithm=multi_teacher", "data.image_size=16", "trainer.epochs=1"]


def lines(cell):
    return [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]


def test_one_teacher_per_partition_and_a_partition_trained_student(compose_cfg, tmp_path):
    overrides = [*MT, "data.partition=iid", "algorithm.teacher_per_partition=true", "loss=[at,kd]",
                 "algorithm.feature_teacher=mean", "algorithm.ensemble=adaptive", "student.partition=1"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    teachers = result["teachers"]
    assert [(t["name"], t["partition"], t["teacher_source"]) for t in teachers] == [
        ("resnet8", 0, "trained"), ("resnet8", 1, "trained")]
    assert teachers[0]["teacher_key"] != teachers[1]["teacher_key"]
    assert result["teacher"] == "resnet8+resnet8" and result["teacher_source"] == "trained"
    assert 0 <= result["teacher_top1"] <= 100 and result["epochs_done"] == 1
    # the student starts from resnet8 trained on part 1: the same cache entry as teacher 1
    assert result["student_start"] == {"partition": 1, "source": "cache",
                                       "key": teachers[1]["teacher_key"]}
    stats = json.loads((tmp_path / "cell" / "partitions.json").read_text())
    assert [p["samples"] for p in stats["parts"]] == [60, 60]
    assert {"loss/at", "loss/kd", "loss/ce"} <= set(lines(tmp_path / "cell")[0])
    for t in teachers:
        saved = json.loads((tmp_path / "cache" / "teachers" / f"resnet8-{t['teacher_key'][:16]}"
                            / "teacher.json").read_text())
        assert saved["partition"]["index"] == t["partition"]


def test_named_teachers_weighted_with_a_relation_loss(compose_cfg, tmp_path):
    overrides = [*MT, "algorithm.teachers=[resnet8,wrn_16_1]", "algorithm.ensemble=weighted",
                 "algorithm.weights=[2,1]", "algorithm.feature_teacher=1", "loss=[sp,kd]"]
    first = run_cell(compose_cfg(overrides), tmp_path / "a", overrides)
    assert [t["name"] for t in first["teachers"]] == ["resnet8", "wrn_16_1"]
    assert first["teacher_source"] == "trained" and "loss/sp" in lines(tmp_path / "a")[0]
    assert not (tmp_path / "a" / "partitions.json").exists()  # data.partition=none
    # teachers from the cache, trained now and a checkpoint: "mixed"; kd alone reads only
    # logits, so feature_teacher=mean accepts architectures whose features differ
    weights = tmp_path / "a" / "checkpoints" / "best.pt"
    again = [*MT, "algorithm.teachers=[resnet8,resnet8x4,resnet8]", "algorithm.feature_teacher=mean",
             f"algorithm.checkpoints=[null,null,{weights}]"]
    second = run_cell(compose_cfg(again), tmp_path / "b", again)
    assert [t["teacher_source"] for t in second["teachers"]] == ["cache", "trained", "checkpoint"]
    assert second["teacher_source"] == "mixed"
    assert second["teachers"][0]["teacher_key"] == first["teachers"][0]["teacher_key"]


def test_the_default_runs_with_two_teachers_of_different_families(compose_cfg, tmp_path):
    """`algorithm=multi_teacher` alone: teacher.name plus a wide ResNet, each trained once."""
    result = run_cell(compose_cfg(MT), tmp_path / "cell", MT)
    assert result["status"] == "completed"
    assert [t["name"] for t in result["teachers"]] == ["resnet8", "wrn_16_2"]
    assert result["teacher"] == "resnet8+wrn_16_2" and result["teacher_source"] == "trained"


@pytest.mark.parametrize("extra, message", [
    (["algorithm.teachers=[resnet8,resnet8x4]", "loss=[at,kd]", "algorithm.feature_teacher=mean"],
     "algorithm.feature_teacher=mean"),
    (["algorithm.teachers=[resnet8,resnet8]", "algorithm.ensemble=weighted", "algorithm.weights=[1]"],
     "algorithm.weights"),
    (["algorithm.teachers=[resnet8]", "algorithm.weights=[1]"], "algorithm.weights"),
    (["algorithm.teachers=[resnet8]", "algorithm.feature_teacher=2"], "algorithm.feature_teacher=2"),
    (["algorithm.teachers=[resnet8]", "algorithm.ensemble=vote"], "algorithm.ensemble=vote"),
    (["algorithm.teachers=[resnet8]", "algorithm.checkpoints=[null,null]"], "algorithm.checkpoints"),
    (["algorithm.teachers=[resnet8,no_such_net]"], r"algorithm.teachers\[1\].name=no_such_net"),
    (["algorithm.teacher_per_partition=true"], "algorithm.teacher_per_partition=true needs"),
    (["algorithm.teachers=[resnet8]", "loss=ce"], "algorithm=multi_teacher needs a loss"),
    (["algorithm.teachers=[resnet8]", "student.partition=0"], "student.partition=0 needs"),
    (["algorithm.teachers=[resnet8]", "data.partition=iid", "student.partition=2"],
     "student.partition=2 does not exist"),
])
def test_bad_config_fails_before_training(compose_cfg, tmp_path, extra, message):
    overrides = [*MT, *extra]
    with pytest.raises(ConfigError, match=message):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()
