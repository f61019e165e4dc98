"""The task axis: classification scores as top1 always did, and fit() follows any task's
metrics, selection direction and result keys (a fake lower-is-better task drives it)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import interrupt_checkpoint
from torch import nn

from kdrun.config.errors import ConfigError
from kdrun.data.tensor_loader import TensorLoader
from kdrun.engine.config import OptimConfig, SchedConfig
from kdrun.engine.evaluate import evaluate_splits, top1
from kdrun.engine.loop import fit
from kdrun.models.output import ModelOutput
from kdrun.tasks import Selection, Task, list_tasks, register_task, task_for
from kdrun.tasks import base as task_base
from kdrun.tracking.tracker import Tracker

CPU = torch.device("cpu")


class TinyNet(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        return ModelOutput(logits, [x], x.flatten(1))


class CEObjective(nn.Module):
    """What fit() trains: batch -> ({term: value}, logits), with the model as .student."""

    def __init__(self):
        super().__init__()
        self.student = TinyNet()

    def forward(self, batch):
        logits = self.student(batch.x).logits
        return {"ce": F.cross_entropy(logits, batch.y)}, logits


def tiny_data(n: int = 48, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = (x.flatten(1)[:, 0] > 0).long() + (x.flatten(1)[:, 1] > 0.5).long()
    loader = lambda a, b, **kw: TensorLoader(x[a:b], y[a:b], 8, **kw)  # noqa: E731
    return SimpleNamespace(name="tiny", train=loader(0, 32, shuffle=True, seed=seed),
                           val=loader(32, 40), test=loader(40, 48))


def run_fit(tmp_path, epochs: int = 3, **kwargs):
    torch.manual_seed(0)
    result = fit(CEObjective(), tiny_data(), epochs=epochs, optim=OptimConfig(lr=0.1),
                 sched=SchedConfig(), ckpt_dir=tmp_path / "checkpoints", tracker=Tracker(tmp_path),
                 device=CPU, progress=False, **kwargs)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return result, lines


def test_classification_is_registered_and_the_default():
    task = task_for("classification")
    assert "classification" in list_tasks()
    assert task_for(None) is task and task_for(SimpleNamespace(name="classification")) is task
    assert task.output_type is ModelOutput
    assert task.metrics == ("top1",) and task.selection == Selection("top1", "max")
    assert task.result_keys == ("student_top1", "best_student_top1", "val_top1", "teacher_top1")
    assert task.empty_result() == dict.fromkeys(task.result_keys)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ConfigError, match="task=nope.*classification"):
        task_for("nope")


def test_classification_metrics_equal_top1():
    torch.manual_seed(0)
    model, data, task = TinyNet(), tiny_data(), task_for("classification")
    for loader in (data.val, data.test, data.train):
        assert task.evaluate(model, loader, CPU) == {"top1": top1(model, loader, CPU)}
    scores = evaluate_splits(task, model, {"val": data.val, "test": data.test}, CPU)
    assert scores == {"val_top1": top1(model, data.val, CPU), "test_top1": top1(model, data.test, CPU)}
    assert task.score_teacher(model, data.test, CPU) == {"teacher_top1": scores["test_top1"]}


def test_classification_train_metric_is_percent_correct():
    task = task_for("classification")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    batch = SimpleNamespace(y=torch.tensor([0, 1, 1, 0]))
    sums = task.train_sums(logits, batch)
    assert sums.item() == 2 and task.train_value([float(sums)], 4) == 50.0


def test_selection_direction_and_ties():
    high, low = Selection("top1", "max"), Selection("ppl", "min")
    assert high.better(1.0, None) and low.better(1.0, None)
    assert high.better(2.0, 1.0) and not high.better(1.0, 2.0)
    assert low.better(1.0, 2.0) and not low.better(2.0, 1.0)
    assert not high.better(1.0, 1.0) and not low.better(1.0, 1.0)  # a tie keeps the earlier epoch
    with pytest.raises(ValueError, match="max or min"):
        Selection("ppl", "lowest")


def test_fit_with_classification_writes_the_classification_keys(tmp_path):
    result, lines = run_fit(tmp_path)
    default_result, default_lines = run_fit(tmp_path / "default", task=None)
    assert [{k: v for k, v in r.items() if k != "epoch_s"} for r in lines] == \
        [{k: v for k, v in r.items() if k != "epoch_s"} for r in default_lines]
    assert list(lines[0]) == ["epoch", "loss", "loss/ce", "train_top1", "lr", "val_top1",
                              "test_top1", "epoch_s"]
    assert list(result.as_dict()) == ["epochs_done", "student_top1", "best_student_top1", "val_top1",
                                      "best_epoch", "wall_s", "resumed_from"]
    best = max(range(len(lines)), key=lambda i: (lines[i]["val_top1"], -i))
    assert result.best_epoch == best + 1 and result.val_top1 == lines[best]["val_top1"]
    assert result.best_student_top1 == lines[best]["test_top1"]
    assert result.student_top1 == lines[-1]["test_top1"]
    with pytest.raises(AttributeError):
        result.student_ppl  # noqa: B018


def test_classification_checkpoint_keeps_its_format_and_resumes(tmp_path, monkeypatch):
    """last.pt's best/last dicts are the ones kdrun has always written, so a last.pt from
    before the task axis resumes, and an interrupted fit ends where a straight one does."""
    straight, straight_lines = run_fit(tmp_path / "straight")
    restore = interrupt_checkpoint(monkeypatch, lambda obj, path: path.name == "last.pt"
                                   and obj["epoch"] == 3)
    with pytest.raises(KeyboardInterrupt):
        run_fit(tmp_path / "cut")
    restore()
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    assert list(state["best"]) == ["val_top1", "best_student_top1", "best_epoch"]
    assert list(state["last"]) == ["student_top1"]
    resumed, resumed_lines = run_fit(tmp_path / "cut")
    assert resumed.resumed_from == 2
    assert resumed.metrics == straight.metrics and resumed.best_epoch == straight.best_epoch
    assert [{k: v for k, v in r.items() if k != "epoch_s"} for r in resumed_lines] == \
        [{k: v for k, v in r.items() if k != "epoch_s"} for r in straight_lines]


class ScriptedLoss(Task):
    """A lower-is-better task whose val/test scores follow a script, one value per epoch."""

    name = "scripted_loss"
    output_type = ModelOutput
    metrics = ("nll", "top1")
    selection = Selection("nll", "min")
    train_metric = "nll"

    def __init__(self, script):
        self.script = {split: list(values) for split, values in script.items()}
        self.loaders = {}

    def build_data(self, data_cfg, seed):
        return tiny_data(seed=seed)

    def evaluate(self, predictor, loader, device, across_ranks=False):
        split = self.loaders[id(loader)]
        return {"nll": self.script[split].pop(0), "top1": top1(predictor, loader, device)}

    def train_sums(self, logits, batch):
        return F.cross_entropy(logits.float(), batch.y, reduction="sum").detach()

    def train_value(self, sums, seen):
        return sums[0] / seen


@pytest.fixture
def scripted_task():
    task = register_task(ScriptedLoss({"val": [3.0, 1.0, 2.0, 1.0], "test": [30.0, 10.0, 20.0, 5.0]}))
    yield task
    task_base._TASKS.pop(task.name)


def test_fit_picks_the_lowest_validation_epoch_of_a_min_task(tmp_path, scripted_task):
    torch.manual_seed(0)
    data = scripted_task.build_data(None, 0)
    scripted_task.loaders = {id(data.val): "val", id(data.test): "test"}
    assert task_for("scripted_loss") is scripted_task
    result = fit(CEObjective(), data, epochs=4, optim=OptimConfig(lr=0.1), sched=SchedConfig(),
                 ckpt_dir=tmp_path / "checkpoints", tracker=Tracker(tmp_path), device=CPU,
                 progress=False, task=scripted_task)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]

    assert [line["val_nll"] for line in lines] == [3.0, 1.0, 2.0, 1.0]
    assert [line["test_nll"] for line in lines] == [30.0, 10.0, 20.0, 5.0]
    for line in lines:
        assert {"train_nll", "val_top1", "test_top1"} <= set(line) and "train_top1" not in line
        assert line["train_nll"] > 0
    assert result.best_epoch == 2  # the lowest val_nll; the tie at epoch 4 keeps epoch 2
    assert result.metrics == {"student_nll": 5.0, "student_top1": lines[-1]["test_top1"],
                              "val_nll": 1.0, "val_top1": lines[1]["val_top1"],
                              "best_student_nll": 10.0, "best_student_top1": lines[1]["test_top1"]}
    assert result.student_nll == 5.0 and result.best_student_nll == 10.0
    assert scripted_task.result_keys == ("student_nll", "best_student_nll", "val_nll", "student_top1",
                                         "best_student_top1", "val_top1", "teacher_nll", "teacher_top1")
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["val_nll"] == 1.0


def test_last_pt_of_another_task_is_not_resumed(tmp_path, scripted_task):
    run_fit(tmp_path, epochs=2)  # a classification last.pt
    data = scripted_task.build_data(None, 0)
    scripted_task.script = {"val": [2.0, 1.0], "test": [2.0, 1.0]}
    scripted_task.loaders = {id(data.val): "val", id(data.test): "test"}
    result = fit(CEObjective(), data, epochs=2, optim=OptimConfig(), sched=SchedConfig(),
                 ckpt_dir=tmp_path / "checkpoints", tracker=Tracker(tmp_path), device=CPU,
                 progress=False, task=scripted_task)
    assert result.resumed_from == 0 and result.best_epoch == 2 and result.val_nll == 1.0
