"""lifelong (LwF): every seen task is scored after each task; LwF forgets less than finetuning."""

from __future__ import annotations

import shutil

import pytest
import torch

from kdrun.algorithms.lifelong import forgetting
from kdrun.algorithms.lifelong_tasks import class_subset, split_classes
from kdrun.config.errors import ConfigError
from kdrun.data import build_data
from kdrun.data.config import DataConfig
from kdrun.engine.cell import run_cell
from kdrun.tracking.result import RESULT_FILE

pytestmark = pytest.mark.usefixtures("one_thread")

# full digits at their native 8 px: each 5-class task is learned in 3 epochs, in seconds
SPLIT = ["algorithm=lifelong", "algorithm.tasks=2", "student=resnet8", "data.image_size=8",
         "data.max_val=100", "algorithm.batch_size=32", "trainer.epochs=3", "logger=none",
         "trainer.progress=false"]


def test_classes_split_in_order_and_subsets_keep_their_samples():
    assert split_classes(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert split_classes(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    data = build_data(DataConfig(max_train=200), seed=0)
    subset = class_subset(data.train, [3, 7], "digits")
    assert set(subset.labels.tolist()) == {3, 7}
    assert torch.equal(data.train.labels[subset.source_index], subset.labels)
    assert torch.equal(data.train.images[subset.source_index], subset.images)
    assert subset.num_samples == int(torch.isin(data.train.labels, torch.tensor([3, 7])).sum())
    batch = next(iter(subset))
    assert batch.index.max() < subset.num_samples


def test_forgetting_is_the_mean_drop_from_the_best_earlier_accuracy():
    rows = [{"top1": [90.0]}, {"top1": [80.0, 95.0]}, {"top1": [85.0, 70.0, 99.0]}]
    assert forgetting(rows) == pytest.approx(((90 - 85) + (95 - 70)) / 2)
    assert forgetting(rows[:1]) is None


def test_lwf_remembers_the_old_task_better_than_finetuning(compose_cfg, tmp_path):
    lwf = run_cell(compose_cfg(SPLIT), tmp_path / "lwf", SPLIT)
    tasks = lwf["tasks"]
    assert [t["task"] for t in tasks] == [1, 2] and [len(t["top1"]) for t in tasks] == [1, 2]
    assert tasks[0]["classes"] == [0, 1, 2, 3, 4] and tasks[1]["classes"] == [5, 6, 7, 8, 9]
    assert lwf["average_top1"] == pytest.approx(sum(tasks[1]["top1"]) / 2)
    assert lwf["teacher"] is None and lwf["epochs_done"] == 6
    assert 0 <= lwf["student_top1"] <= 100 and lwf["val_top1"] is not None
    assert '"loss/lwf"' in (tmp_path / "lwf" / "metrics.task2.jsonl").read_text()
    assert (tmp_path / "lwf" / "checkpoints" / "task2" / "last.pt").is_file()

    # the first task does not depend on the method: finetune resumes it from LwF's checkpoint
    finetune_overrides = [*SPLIT, "algorithm.method=finetune"]
    shutil.copytree(tmp_path / "lwf" / "checkpoints" / "task1",
                    tmp_path / "finetune" / "checkpoints" / "task1")
    finetune = run_cell(compose_cfg(finetune_overrides), tmp_path / "finetune", finetune_overrides)
    assert finetune["tasks"][0]["top1"] == tasks[0]["top1"]
    assert '"loss/lwf"' not in (tmp_path / "finetune" / "metrics.task2.jsonl").read_text()
    old_lwf, old_finetune = tasks[1]["top1"][0], finetune["tasks"][1]["top1"][0]
    assert old_lwf > old_finetune + 5.0, (old_lwf, old_finetune)
    assert lwf["forgetting"] < finetune["forgetting"]

    # every task resumes from its own checkpoints: a rerun retrains nothing, scores the same
    (tmp_path / "lwf" / RESULT_FILE).unlink()
    again = run_cell(compose_cfg(SPLIT), tmp_path / "lwf", SPLIT)
    assert again["tasks"] == tasks and again["wall_s"] == lwf["wall_s"]


def test_lifelong_bad_config_fails_before_training(compose_cfg, tmp_path):
    for bad, key in ((["algorithm.tasks=11"], "algorithm.tasks"),
                     (["loss.kd.temperature=3"], "loss.kd.temperature"),
                     (["algorithm.method=replay"], "algorithm.method"),
                     (["algorithm.batch_size=0"], "algorithm.batch_size")):
        overrides = [*SPLIT, *bad]
        with pytest.raises(ConfigError, match=key):
            run_cell(compose_cfg(overrides), tmp_path / key, overrides)
        assert not (tmp_path / key / "checkpoints").exists()
