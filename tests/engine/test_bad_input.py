"""Bad input fails before any training with one line naming the key and the fix."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from helpers import TINY, run_kdrun

from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell
from kdrun.models import create_model


def assert_nothing_trained(tmp_path, cell):
    assert not (tmp_path / "cache" / "teachers").exists()
    assert not (cell / "checkpoints").exists()
    saved = json.loads((cell / "result.json").read_text())
    assert saved["status"] == "failed" and saved["error"].startswith("ConfigError")


@pytest.mark.parametrize("overrides,needles", [
    (["teacher=timm", "teacher.name=resnet5"], ["teacher.name=resnet5", "did you mean", "resnet50"]),
    (["student=timm", "student.name=wrn_40_3"], ["student.name=wrn_40_3", "wrn_40_2"]),
    (["loss.kd.temperature=0"], ["loss.kd.temperature=0.0 must be > 0"]),
    (["loss.kd.temperature=-2"], ["loss.kd.temperature=-2.0 must be > 0"]),
    (["loss.kd.alpha=1.5"], ["loss.kd.alpha=1.5 must be within [0, 1]"]),
    (["data=cifar10", "data.root=/nonexistent/cifar"], ["data.root", "/nonexistent/cifar", "data.download=true"]),
    (["data=fashion_mnist", "data.root=/nonexistent/fm"], ["data.root", "dataset-fashion-mnist"]),
    (["student.num_classes=100"], ["student.num_classes=100", "10 classes"]),
    (["teacher.num_classes=7"], ["teacher.num_classes=7", "10 classes"]),
    (["teacher=timm"], ["teacher.name is not set", "teacher.name=resnet18"]),
    (["trainer.device=cuda"], ["trainer.device=cuda", "no CUDA"]),
    (["optim.lr=0"], ["optim.lr=0.0 must be > 0"]),
])
def test_bad_value_fails_before_training(overrides, needles, compose_cfg, tmp_path):
    cell = tmp_path / "cell"
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg([*TINY, *overrides]), cell, overrides)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message
    assert_nothing_trained(tmp_path, cell)


def test_teacher_checkpoint_with_other_class_count(compose_cfg, tmp_path):
    weights = tmp_path / "teacher100.pt"
    torch.save(create_model("resnet8", num_classes=100, in_chans=1).state_dict(), weights)
    cell = tmp_path / "cell"
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg([*TINY, f"teacher.checkpoint={weights}"]), cell, [])
    assert f"teacher.checkpoint={weights}" in str(err.value)
    assert "(100, " in str(err.value) and "(10, " in str(err.value)
    assert not (cell / "checkpoints").exists()


def test_missing_teacher_checkpoint(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run_cell(compose_cfg([*TINY, "teacher.checkpoint=/nope/t.pt"]), tmp_path / "c", [])


def test_cli_prints_one_line_and_exits_2(tmp_path):
    proc = run_kdrun([*TINY, "loss.kd.alpha=2", f"paths.output_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["kdrun: error: loss.kd.alpha=2.0 must be within [0, 1]: it weighs the "
                     "distillation term against the label cross-entropy"]


def test_cli_unknown_key_names_it(tmp_path):
    proc = run_kdrun([*TINY, "loss.kd.temprature=4", f"paths.output_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Key 'temprature' not in 'KDConfig'" in proc.stderr
    assert not (tmp_path / "runs").exists()


class RunsCode:
    """Unpickling this would run a shell command: weights_only must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_weights(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"\x80\x02not a checkpoint at all" * 7)
    elif kind == "truncated":
        torch.save(create_model("resnet8", num_classes=10, in_chans=1).state_dict(), path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif kind == "pickled_code":
        path.write_bytes(pickle.dumps(RunsCode(tmp_path / "ran"), protocol=2))
    else:  # torch.save of an object of a class defined here
        torch.save({"model": RunsCode(tmp_path / "ran")}, path)
    return path


@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.parametrize("kind", ["garbage", "truncated", "pickled_code", "torch_saved_code"])
def test_unloadable_checkpoint_is_one_line_naming_the_key(role, kind, compose_cfg, tmp_path):
    weights = bad_weights(tmp_path, kind)
    cell = tmp_path / "cell"
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg([*TINY, f"{role}.checkpoint={weights}"]), cell, [])
    message = str(err.value)
    assert message.startswith(f"{role}.checkpoint={weights}: not a loadable weights file (")
    assert message.endswith(")") and "\n" not in message and len(message) < 400
    if "code" in kind:
        assert "weights_only refused it" in message
    assert not (tmp_path / "ran").exists()
    assert_nothing_trained(tmp_path, cell)


def test_unloadable_multi_teacher_checkpoint_names_its_entry(compose_cfg, tmp_path):
    weights = bad_weights(tmp_path, "garbage")
    overrides = ["algorithm=multi_teacher", "algorithm.teachers=[resnet8]",
                 f"algorithm.checkpoints=[{weights}]"]
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg([*TINY, *overrides]), tmp_path / "cell", [])
    assert str(err.value).startswith(f"algorithm.checkpoints[0]={weights}: not a loadable weights "
                                     "file (")


@pytest.mark.parametrize("kind", ["garbage", "pickled_code"])
def test_cli_unloadable_checkpoint_prints_one_line_and_exits_2(kind, tmp_path):
    weights = bad_weights(tmp_path, kind)
    proc = run_kdrun([*TINY, f"teacher.checkpoint={weights}", f"paths.output_dir={tmp_path}",
                      f"paths.cache_dir={tmp_path}/cache"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kdrun: error: teacher.checkpoint={weights}: not a loadable "
                               "weights file (")
    assert not (tmp_path / "ran").exists()


# Issue 11: every numeric key of every group is range-checked by its declared bounds
# (kdrun/config/bounds.py); one case per group, each refused before anything trains.
@pytest.mark.parametrize("overrides,message", [
    (["trainer.epochs=-1"], "trainer.epochs=-1 must be >= 1"),
    (["trainer.threads=0"], "trainer.threads=0 must be >= 1"),
    (["trainer.grad_clip=0"], "trainer.grad_clip=0.0 must be > 0"),
    (["data.max_train=0"], "data.max_train=0 must be >= 1: or null for the whole split"),
    (["data.batch_size=0"], "data.batch_size=0 must be >= 1"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5 must be within (0, 1)"),
    (["data.aug_views=0"], "data.aug_views=0 must be >= 1"),
    (["optim.momentum=1.5"], "optim.momentum=1.5 must be within [0, 1)"),
    (["sched=multistep", "sched.milestones=[3,0]"], "sched.milestones[1]=0 must be >= 1"),
    (["teacher.train.epochs=-1"], "teacher.train.epochs=-1 must be >= 0"),
    (["teacher.train.optim.lr=-0.1"], "teacher.train.optim.lr=-0.1 must be > 0"),
    (["seed=-3"], "seed=-3 must be >= 0"),
    (["loss.kd.warmup_epochs=-1"], "loss.kd.warmup_epochs=-1 must be >= 0"),
    (["loss=crd", "loss.crd.momentum=1"], "loss.crd.momentum=1.0 must be within [0, 1)"),
    (["scheme=online", "scheme.branch_stages=0"], "scheme.branch_stages=0 must be >= 1"),
    (["scheme=self", "scheme.generations=0"], "scheme.generations=0 must be >= 1"),
    (["algorithm=federated", "algorithm.rounds=0"], "algorithm.rounds=0 must be >= 1"),
    (["algorithm=quantized", "algorithm.bits=9"], "algorithm.bits=9 must be within [2, 8]"),
    (["algorithm=data_free", "algorithm.batch_size=0"], "algorithm.batch_size=0 must be >= 1"),
    (["algorithm=lifelong", "algorithm.tasks=1"], "algorithm.tasks=1 must be >= 2"),
    (["algorithm=multi_teacher", "algorithm.ensemble=weighted", "algorithm.weights=[1,-1]"],
     "algorithm.weights[1]=-1.0 must be >= 0"),
    (["algorithm=federated", "algorithm.server_optim.lr=0"], "algorithm.server_optim.lr=0.0 must be > 0"),
])
def test_out_of_range_values_are_refused_by_their_declared_bounds(overrides, message, compose_cfg,
                                                                    tmp_path):
    cell = tmp_path / "cell"
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg([*TINY, *overrides]), cell, overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert_nothing_trained(tmp_path, cell)


@pytest.mark.parametrize("override,message", [
    ("trainer.epochs=-1", "kdrun: error: trainer.epochs=-1 must be >= 1"),
    ("data.max_train=0", "kdrun: error: data.max_train=0 must be >= 1: or null for the whole split"),
    ("trainer.epochs=abc", "kdrun: error: trainer.epochs=abc: Value 'abc' of type 'str' could not "
                           "be converted to Integer"),
    ("loss=kdd", "kdrun: error: loss=kdd: no such option; available: ab, "),  # options sorted
])
def test_cli_refuses_bad_values_and_types_in_one_line(override, message, tmp_path):
    proc = run_kdrun([*TINY, override, f"paths.output_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not any(p.name == "result.json" and '"completed"' in p.read_text()
                   for p in tmp_path.rglob("result.json"))


def test_adaptive_refuses_a_kd_temperature_it_would_ignore(compose_cfg, tmp_path):
    overrides = ["algorithm=adaptive", "loss.kd.temperature=8"]
    with pytest.raises(ConfigError, match=r"^loss.kd.temperature=8.0 has no effect under "
                                          r"algorithm=adaptive: CTKD learns the temperature"):
        run_cell(compose_cfg([*TINY, *overrides]), tmp_path / "cell", overrides)
    assert_nothing_trained(tmp_path, tmp_path / "cell")


def test_teacher_settings_without_a_teacher_are_reported(compose_cfg, tmp_path, caplog):
    overrides = ["loss=ce", "teacher.train.epochs=3", "teacher.name=resnet8"]
    with caplog.at_level("WARNING", logger="kdrun"):
        result = run_cell(compose_cfg([*TINY, *overrides]), tmp_path / "cell", overrides)
    assert result["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "teacher.train.epochs has no effect: loss=['ce'] reads no teacher" in warnings
    assert not any("teacher.name" in w for w in warnings)
