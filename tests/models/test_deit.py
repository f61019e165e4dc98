"""DeiT's distillation token (student=deit_tiny, loss=deit): the model's outputs, the loss's
formulas by hand, the mean-of-heads prediction, and one cell on digits (resnet8 teaches)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from kdrun.config.errors import ConfigError
from kdrun.engine.cell import run_cell
from kdrun.losses import ce_weight, loss_class
from kdrun.losses.response.deit import DeiTConfig, hard_distillation, mean_of_heads
from kdrun.models import ModelOutput, create_model


def test_deit_tiny_gives_class_and_distillation_tokens():
    torch.manual_seed(0)
    model = create_model("deit_tiny", num_classes=10, in_chans=1, depth=2)
    out = model(torch.randn(3, 1, 32, 32))
    assert out.logits.shape == (3, 10) and out.embedding.shape == (3, 192)
    assert out.features[-1].shape == (3, 2, 192)
    assert torch.equal(out.features[-1][:, 0], out.embedding)
    full = create_model("deit_tiny", num_classes=1000)  # DeiT-Ti: 5.7 M at 224 px with 2 heads
    count = sum(p.numel() for p in full.parameters())
    assert 5.3e6 < count < 5.7e6  # at 32 px: fewer position embeddings, one head (loss=deit's)


def test_hard_distillation_is_ce_on_the_teachers_argmax():
    dist = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    teacher = torch.tensor([[0.1, 0.9, 0.0], [5.0, 0.0, 1.0]])  # argmax 1, 0
    expected = (-(F.log_softmax(dist[0], 0)[1]) - F.log_softmax(dist[1], 0)[0]) / 2
    assert hard_distillation(dist, teacher).item() == pytest.approx(expected.item())


def test_mean_of_heads_is_the_mean_of_softmaxes():
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    mixed = mean_of_heads(a, b)
    assert torch.allclose(mixed.exp(), (a.softmax(-1) + b.softmax(-1)) / 2, atol=1e-6)
    assert torch.allclose(mean_of_heads(a, a), F.log_softmax(a, -1), atol=1e-6)


def deit_out(cls_logits, tokens):
    return ModelOutput(cls_logits, [tokens], tokens[:, 0])


def test_deit_loss_terms_and_weights_by_hand():
    torch.manual_seed(0)
    tokens = torch.randn(2, 2, 4)
    student = deit_out(torch.randn(2, 3), tokens)
    teacher = ModelOutput(torch.randn(2, 3), [torch.zeros(2, 1, 2, 2)], torch.zeros(2, 3))
    hard = loss_class("deit")(DeiTConfig(), student, teacher)
    dist = hard.head_dist(tokens[:, 1])
    assert hard(student, teacher, None)["deit"].item() == pytest.approx(
        0.5 * hard_distillation(dist, teacher.logits).item())
    assert ce_weight({"deit": DeiTConfig()}) == 0.5  # 1/2 CE + 1/2 CE(dist, y_t)
    soft_cfg = DeiTConfig(mode="soft", lam=0.1, temperature=3.0)
    soft = loss_class("deit")(soft_cfg, student, teacher)
    dist = soft.head_dist(tokens[:, 1])
    p_t = F.softmax(teacher.logits / 3, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(dist / 3, -1))).sum(-1).mean()
    assert soft(student, teacher, None)["deit"].item() == pytest.approx(0.1 * 9 * kl.item(), rel=1e-5)
    assert ce_weight({"deit": soft_cfg}) == pytest.approx(0.9)
    # the prediction is the mean of both heads
    assert torch.allclose(soft.student_logits(student), mean_of_heads(student.logits, dist))


def test_deit_loss_refuses_a_student_without_a_distillation_token():
    image = ModelOutput(torch.zeros(2, 3), [torch.zeros(2, 4, 2, 2)], torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="loss=deit needs a ViT student with a distillation token"):
        loss_class("deit")(DeiTConfig(), image, image)
    with pytest.raises(ConfigError, match="loss.deit.mode=both: use hard or soft"):
        loss_class("deit").validate(DeiTConfig(mode="both"))


def test_a_deit_cell_on_digits(compose_cfg, tmp_path):
    overrides = ["teacher=resnet8", "student=deit_tiny", "+student.kwargs.depth=1",
                 "+student.kwargs.patch_size=8", "loss=deit", "optim=adamw", "optim.lr=0.001",
                 "data.max_train=120", "data.max_val=40", "data.max_test=40", "data.batch_size=32",
                 "trainer.epochs=1", "teacher.train.epochs=1", "logger=none",
                 "trainer.progress=false", "trainer.threads=1"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and math.isfinite(result["student_top1"])
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss/ce", "loss/deit"} <= set(line)


def test_deit_tiny_leaves_timm_names_alone():
    import timm

    assert not timm.is_model("deit_tiny") and timm.is_model("deit_tiny_distilled_patch16_224")
