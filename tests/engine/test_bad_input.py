"""Bad input fails before any training with one line naming the key and the fix."""

from __future__ import annotations

import json

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
