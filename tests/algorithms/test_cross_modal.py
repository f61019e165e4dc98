"""cross_modal: the student never receives the teacher's modality; the teacher reads only its
own; the paired batches align the two views of each sample."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.config.errors import ConfigError
from kdrun.data import build_data
from kdrun.data.paired import PairedBatch, intensity_profiles, paired_views
from kdrun.engine.cell import run_cell
from kdrun.models import ModelOutput, create_model
from kdrun.models.signal import SignalCNN

CROSS = [*TINY, "algorithm=cross_modal", "student=signal_cnn", "algorithm.embedding_weight=1",
         "algorithm.baseline=false"]


def test_signal_model_keeps_the_model_output_contract():
    model = create_model("signal_cnn", num_classes=10, in_chans=2)
    out = model(torch.randn(4, 2, 32))
    assert isinstance(out, ModelOutput) and out.logits.shape == (4, 10)
    assert [f.shape[1] for f in out.features] == model.feature_channels
    assert [f.shape[2] for f in out.features] == [32, 16, 8]
    assert out.embedding.shape == (4, 128) and len(out.preact_features) == 3
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_paired_batches_align_the_two_views_and_x_is_the_students(compose_cfg):
    cfg = compose_cfg(TINY)
    bundle = build_data(cfg.data, 0)
    paired = paired_views(bundle, "profiles", batch_size=32, eval_batch_size=64, seed=0)
    assert paired.teacher_shape == (1, 32, 32) and paired.student_shape == (2, 32)
    batch = next(iter(paired.train))
    assert isinstance(batch, PairedBatch) and batch.x is batch.x_student
    assert torch.equal(batch.teacher_batch().x, batch.x_teacher)
    assert torch.equal(batch.y, bundle.train_plain.labels[batch.index])
    profiles = intensity_profiles(bundle.train_plain.images)  # same samples, other modality
    mean, std = profiles.mean(dim=(0, 2)), profiles.std(dim=(0, 2))
    expected = (profiles[batch.index] - mean.view(1, -1, 1)) / std.view(1, -1, 1)
    torch.testing.assert_close(batch.x_student, expected, rtol=1e-4, atol=1e-4)
    test_batch = next(iter(paired.test))  # evaluation: the student's modality only
    assert test_batch.x.shape[1:] == (2, 32)


def test_student_never_receives_the_teachers_modality(compose_cfg, tmp_path):
    seen: dict[str, list] = {"student": [], "teacher": []}

    def record(module, args):
        role = "student" if isinstance(module, SignalCNN) else "teacher"
        seen[role].append(args[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, args: record(m, args) if type(m).__name__ in ("SignalCNN", "CifarResNet") else None)
    try:
        result = run_cell(compose_cfg(CROSS), tmp_path / "cell", CROSS)
    finally:
        handle.remove()
    assert result["status"] == "completed"
    assert result["student_input_shape"] == [2, 32] and result["teacher_input_shape"] == [1, 32, 32]
    assert seen["student"] and seen["teacher"]
    assert all(x.dim() == 3 and tuple(x.shape[1:]) == (2, 32) for x in seen["student"])
    assert all(x.dim() == 4 and tuple(x.shape[1:]) == (1, 32, 32) for x in seen["teacher"])
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss/kd", "loss/xmodal_embed", "loss/ce"} <= set(line)


@pytest.mark.slow
def test_baseline_student_alone(compose_cfg, tmp_path):
    overrides = [o for o in TINY if not o.startswith("student=")] + ["algorithm=cross_modal"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["student"] == "signal_cnn"  # the algorithm's default student
    assert result["transfer_gain_top1"] == result["student_top1"] - result["student_alone_top1"]


@pytest.mark.parametrize("override,key", [("loss=at", "loss=at"),
                                          ("student=resnet8", "student.name=resnet8"),
                                          ("algorithm.embedding_distance=kl",
                                           "algorithm.embedding_distance")])
def test_bad_config_fails_before_training(override, key, compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=cross_modal", override]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()


def test_signal_cnn_is_the_default_student_of_cross_modal(compose_cfg):
    assert compose_cfg(["algorithm=cross_modal"]).student.name == "signal_cnn"
    assert compose_cfg(["algorithm=cross_modal", "student=resnet8"]).student.name == "resnet8"
