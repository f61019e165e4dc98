"""pixel_kd, cwd, ifvd, aicsd (task=segmentation): each formula against loops written from the
papers' definitions (numpy), known identities, and errors naming the key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.losses import loss_class
from kdrun.losses.relation.aicsd import AICSDConfig, inter_class_similarity
from kdrun.losses.relation.ifvd import IFVDConfig
from kdrun.losses.response.cwd import CWDConfig
from kdrun.losses.response.kd import soft_kl
from kdrun.losses.response.pixel_kd import PixelKDConfig
from kdrun.models import ModelOutput


def out(logits, features=None):
    return ModelOutput(logits=logits, features=features or [logits], embedding=logits)


def build(name, cfg, s, t):
    cfg = OmegaConf.structured(cfg)
    loss_class(name).validate(cfg)
    return loss_class(name)(cfg, s, t)


def softmax(a):
    e = np.exp(a - a.max())
    return e / e.sum()


def kl(p, q):
    return float((p * (np.log(p) - np.log(q))).sum())


def batch_of(y):
    return Batch(torch.zeros(y.shape[0], 1, *y.shape[1:]), y, torch.arange(y.shape[0]))


torch.manual_seed(0)
S, T = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 3, 4, 5, dtype=torch.float64)


def test_pixel_kd_is_a_per_pixel_kl_averaged_over_pixels():
    temp, weight = 2.0, 0.7
    s, t = S.numpy(), T.numpy()
    want = np.mean([kl(softmax(t[b, :, i, j] / temp), softmax(s[b, :, i, j] / temp))
                    for b in range(2) for i in range(4) for j in range(5)]) * temp**2 * weight
    loss = build("pixel_kd", PixelKDConfig(temperature=temp, weight=weight), out(S), out(T))
    assert loss(out(S), out(T), None)["pixel_kd"].item() == pytest.approx(want, rel=1e-9)
    # identity: Hinton's KD with every pixel a sample (batchmean over B*H*W rows)
    rows = lambda z: z.permute(0, 2, 3, 1).reshape(-1, 3)  # noqa: E731
    assert want == pytest.approx(weight * soft_kl(rows(S), rows(T), temp).item(), rel=1e-9)
    assert loss(out(T), out(T), None)["pixel_kd"].item() == pytest.approx(0.0, abs=1e-12)


def test_pixel_kd_resizes_a_teacher_of_another_resolution():
    small = T[:, :, ::2, ::2].contiguous()
    loss = build("pixel_kd", PixelKDConfig(), out(S), out(small))
    assert math.isfinite(loss(out(S), out(small), None)["pixel_kd"].item())


def test_cwd_is_a_kl_per_channel_over_positions():
    temp, weight = 4.0, 3.0
    s, t = S.numpy(), T.numpy()
    want = np.mean([kl(softmax(t[b, c].ravel() / temp), softmax(s[b, c].ravel() / temp))
                    for b in range(2) for c in range(3)]) * temp**2 * weight
    loss = build("cwd", CWDConfig(), out(S), out(T))
    assert loss(out(S), out(T), None)["cwd"].item() == pytest.approx(want, rel=1e-9)
    shifted = S + torch.tensor([5.0, -2.0, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    assert loss(out(shifted), out(T), None)["cwd"].item() == pytest.approx(want, rel=1e-9)  # per-channel shift


def test_cwd_on_features_sizes_a_connector_and_names_a_bad_stage():
    s = out(torch.randn(2, 3, 8, 8), [torch.randn(2, 4, 8, 8)])
    t = out(torch.randn(2, 3, 8, 8), [torch.randn(2, 6, 4, 4)])
    loss = build("cwd", CWDConfig(feature=-1), s, t)
    assert loss.connector.proj[0].weight.shape == (6, 4, 1, 1)
    value = loss(s, t, None)["cwd"]
    value.backward()
    assert loss.connector.proj[0].weight.grad is not None
    with pytest.raises(ConfigError, match=r"loss.cwd.feature=\[3\]: stage 3 does not exist"):
        build("cwd", CWDConfig(feature=3), s, t)


def test_ifvd_by_hand_on_three_pixels():
    # pixels: (1, 0), (0, 1) of class 0 (prototype (0.5, 0.5), cos 1/sqrt 2 each) and (5, 5) of
    # class 1 (its own prototype, cos 1); the teacher's class-0 pixels agree (cos 1 everywhere)
    fs = torch.tensor([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]).view(1, 2, 1, 3)
    ft = torch.tensor([[2.0, 2.0, 1.0], [1.0, 1.0, 3.0]]).view(1, 2, 1, 3)
    y = torch.tensor([[[0, 0, 1]]])
    logits = torch.zeros(1, 2, 1, 3)
    loss = build("ifvd", IFVDConfig(weight=1.0), out(logits, [fs]), out(logits, [ft]))
    want = 2 * (1 - 1 / math.sqrt(2)) ** 2 / 3
    assert loss(out(logits, [fs]), out(logits, [ft]), batch_of(y))["ifvd"].item() == \
        pytest.approx(want, rel=1e-6)
    ignored = torch.tensor([[[0, IGNORE_INDEX, 1]]])  # pixel 2 compares nothing; class 0 = pixel 1
    assert loss(out(logits, [fs]), out(logits, [ft]), batch_of(ignored))["ifvd"].item() == \
        pytest.approx(0.0, abs=1e-7)


def test_ifvd_is_blind_to_the_scale_and_width_of_the_features():
    torch.manual_seed(1)
    f = torch.randn(2, 4, 6, 6)
    y = torch.randint(0, 3, (2, 6, 6))
    wide = torch.cat([f, f], dim=1)  # another width, the same cosines
    logits = torch.zeros(2, 3, 6, 6)
    loss = build("ifvd", IFVDConfig(), out(logits, [3 * f]), out(logits, [wide]))
    assert loss(out(logits, [3 * f]), out(logits, [wide]), batch_of(y))["ifvd"].item() == \
        pytest.approx(0.0, abs=1e-5)
    assert loss(out(logits, [torch.randn(2, 4, 6, 6)]), out(logits, [wide]),
                batch_of(y))["ifvd"].item() > 1.0
    with pytest.raises(ConfigError, match="loss.ifvd.student_stage"):
        build("ifvd", IFVDConfig(student_stage=4), out(logits, [f]), out(logits, [f]))


def test_aicsd_similarity_matrix_by_loops():
    temp = 2.0
    s = S.numpy()
    want = np.zeros((3, 3))
    for b in range(2):
        p = [softmax(s[b, k].ravel() / temp) for k in range(3)]
        want += np.array([[kl(p[i], p[j]) for j in range(3)] for i in range(3)]) / 2
    got = inter_class_similarity(S, temp).numpy()
    assert np.allclose(got, want, rtol=1e-9) and np.allclose(np.diag(got), 0, atol=1e-12)
    norm = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    t_ics = inter_class_similarity(T, temp).numpy()
    ics = ((norm(want) - norm(t_ics)) ** 2).mean()
    loss = build("aicsd", AICSDConfig(temperature=temp, ics_weight=10.0, kd_weight=0.5,
                                      adaptive=False, epochs=1), out(S), out(T))
    terms = loss(out(S), out(T), None)
    assert terms["aicsd_ics"].item() == pytest.approx(10.0 * ics, rel=1e-9)
    pixel = build("pixel_kd", PixelKDConfig(temperature=temp), out(S), out(T))
    assert terms["aicsd_kd"].item() == pytest.approx(0.5 * pixel(out(S), out(T), None)["pixel_kd"].item())
    assert loss_class("aicsd").ce_scale(OmegaConf.structured(AICSDConfig(adaptive=False, epochs=1))) == 1.0


def test_aicsd_adaptive_weighting_moves_from_pixel_kd_to_ce_and_ics():
    cfg = AICSDConfig(epochs=4)
    assert loss_class("aicsd").ce_scale(OmegaConf.structured(cfg)) == 0.0  # it weighs CE itself
    loss = build("aicsd", cfg, out(S), out(T))
    fixed = build("aicsd", AICSDConfig(adaptive=False, epochs=1), out(S), out(T))(out(S), out(T), None)
    y = torch.randint(0, 3, (2, 4, 5))
    ce = torch.nn.functional.cross_entropy(S, y).item()
    told = build("aicsd", AICSDConfig(), out(S), out(T))  # epochs null: the trainer's, told
    told.set_schedule(4)
    for epoch, alpha in [(0, 0.0), (1, 0.25), (3, 0.75)]:
        loss.set_epoch(epoch)
        told.set_epoch(epoch)
        terms = loss(out(S), out(T), batch_of(y))
        assert told.alpha() == loss.alpha() == alpha
        assert terms["aicsd_ce"].item() == pytest.approx(alpha * ce)
        assert terms["aicsd_ics"].item() == pytest.approx(alpha * fixed["aicsd_ics"].item())
        assert terms["aicsd_kd"].item() == pytest.approx((1 - alpha) * fixed["aicsd_kd"].item())


def test_segmentation_losses_refuse_other_tasks_and_image_losses_refuse_segmentation():
    for name in ("pixel_kd", "cwd", "ifvd", "aicsd"):
        assert loss_class(name).tasks == ("segmentation",)
    assert "segmentation" in loss_class("ce").tasks and "segmentation" not in loss_class("kd").tasks
