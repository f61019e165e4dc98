"""Feature methods in real cells on tiny digits: FitNet's hint stage, a method beside kd,
SimKD's reused teacher classifier, and the pre-ReLU methods refusing timm models."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell
from kdrun.models.build import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fitnet_hint_stage_then_kd(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=[fitnet,kd]", "loss.fitnet.hint_epochs=1"]
    cfg = compose_cfg(overrides)
    cell = tmp_path / "cell"
    result = run_cell(cfg, cell, overrides)
    assert result["status"] == "completed"

    (hint,) = lines(cell / "metrics.pretrain_fitnet.jsonl")
    assert hint["epoch"] == 1 and "loss/fitnet" in hint and "loss/kd" not in hint
    for line in lines(cell / "metrics.jsonl"):  # stage 2 is KD without the hint (the paper)
        assert "loss/kd" in line and "loss/fitnet" not in line

    # stage 1 moved the student up to the guided stage (index 2: stem, stages 0-1) and the
    # regressor, and left the last stage and the classifier as initialised
    stage1 = torch.load(cell / "checkpoints" / "pretrain_fitnet" / "last.pt",
                        weights_only=True)["model"]
    torch.manual_seed(cfg.seed)  # the student's initialisation, as algorithms/vanilla.py draws it
    in_chans = stage1["student.stem.conv.0.weight"].shape[1]
    initial = build_model(cfg.student, "student", 10, in_chans).state_dict()
    params = [k for k in initial if not k.endswith(("running_mean", "running_var",
                                                    "num_batches_tracked"))]
    for key in params:
        moved = not torch.equal(stage1[f"student.{key}"], initial[key])
        assert moved == key.startswith(("stem.", "stages.0.", "stages.1.")), key
    assert any(k.startswith("loss.regressor.") for k in stage1)


def test_ofd_beside_kd_logs_both_terms(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=[ofd,kd]"]
    run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    for line in lines(tmp_path / "cell" / "metrics.jsonl"):
        assert {"loss/ofd", "loss/kd", "loss/ce"} <= set(line)


def test_simkd_predicts_with_the_teachers_classifier(compose_cfg, tmp_path):
    overrides = [*TINY, "loss=simkd"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and 0 <= result["student_top1"] <= 100
    for line in lines(tmp_path / "cell" / "metrics.jsonl"):
        assert "loss/simkd" in line and "loss/ce" not in line  # the L2 loss alone
    last = torch.load(tmp_path / "cell" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any(k.startswith("losses.simkd.projector.") for k in last)
    assert not any(k.startswith(("teacher", "losses.simkd.classifier")) for k in last)


@pytest.mark.parametrize("name", ["ab", "ofd"])
def test_preact_methods_stop_before_training_on_timm_models(compose_cfg, tmp_path, name):
    overrides = [*TINY, f"loss={name}", "teacher=mobilenet"]
    with pytest.raises(ConfigError, match=rf"loss={name} needs preact_features, which "
                                          r"teacher.name=mobilenet does not provide"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    saved = json.loads((tmp_path / "cell" / "result.json").read_text())
    assert saved["status"] == "failed" and "preact_features" in saved["error"]
    assert not (tmp_path / "cache" / "teachers").exists()  # nothing was trained
    assert not (tmp_path / "cell" / "checkpoints").exists()
