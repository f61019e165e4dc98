"""Every CIFAR zoo model: the ModelOutput contract, gradients and parameter counts."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from kdrun.models import ModelOutput, create_model, zoo_models
from kdrun.models.registry import model_kind
from kdrun.models.signal import SIGNAL_MODELS

# CNN image classifiers only: 1-D models are tested in tests/algorithms, ViTs (token features,
# no stages) in tests/models/test_deit.py, each task's own models (kind "segmentation", ...) in its tests
VISION_TRANSFORMERS = {"deit_tiny"}
ZOO = [name for name in zoo_models() if name not in SIGNAL_MODELS and model_kind(name) == "image"
       and name not in VISION_TRANSFORMERS]
# The embedding pools a 1x1 conv wider than the last stage (the papers' final conv).
WIDE_HEAD = {"mobilenetv2", "shufflenetv2"}
# Stages end in a linear bottleneck (no ReLU), so a stage's preact is its feature.
LINEAR_STAGES = {"mobilenetv2"}
# Pre-activation nets: features are raw residual sums, preacts are them after the next BN.
PREACT_NETS = {name for name in ZOO if name.startswith("wrn_")}

# Millions of parameters for 100 classes, as KD papers quote them (two decimals). The
# RepDistiller README itself lists none; EXACT below pins the zoo to the reference code.
PUBLISHED_M = {
    "resnet20": 0.28, "resnet56": 0.86, "resnet110": 1.73, "resnet8x4": 1.23,
    "resnet32x4": 7.43, "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26, "vgg8": 3.96,
    "vgg13_cifar": 9.46, "mobilenetv2": 0.81, "shufflenetv1": 0.95, "shufflenetv2": 1.36,
    "resnet50_cifar": 23.71,
}
# Exact counts for 100 classes of the KD tables' reference models (HobbitLong/RepDistiller
# models/ at b84f547, counted once offline); every zoo model has the same parameter shapes.
EXACT = {
    "resnet8": 83892, "resnet14": 181108, "resnet20": 278324, "resnet32": 472756,
    "resnet44": 667188, "resnet56": 861620, "resnet110": 1736564, "resnet8x4": 1233540,
    "resnet32x4": 7433860, "resnet50_cifar": 23705252, "wrn_16_1": 180916,
    "wrn_16_2": 703284, "wrn_40_1": 569780, "wrn_40_2": 2255156, "vgg8": 3965028,
    "vgg11_cifar": 9277284, "vgg13_cifar": 9462180, "vgg16_cifar": 14774436,
    "vgg19_cifar": 20086692, "mobilenetv2": 812836, "shufflenetv1": 949258,
    "shufflenetv2": 1355528,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", ZOO)
def test_output_contract_and_gradients(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans)
    out = model(torch.randn(2, in_chans, 32, 32))

    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 10)
    features = out.features
    assert isinstance(features, list) and features
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in features)
    heights = [f.shape[2] for f in features]
    widths = [f.shape[3] for f in features]
    assert heights == sorted(heights, reverse=True) and widths == sorted(widths, reverse=True)
    assert [f.shape[1] for f in features] == model.feature_channels
    assert [p.shape for p in out.preact_features] == [f.shape for f in features]
    assert out.embedding.shape == (2, model.fc.in_features)
    if name not in WIDE_HEAD:
        assert out.embedding.shape[1] == features[-1].shape[1]

    out.logits.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"{name}: no gradient reaches {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_preact_features_are_the_pre_relu_stages(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    pairs = list(zip(out.features, out.preact_features))
    if name in PREACT_NETS:
        # the last preact is the final BN's output: its ReLU is what gets pooled
        last = F.relu(out.preact_features[-1]).mean(dim=(2, 3))
        torch.testing.assert_close(last, out.embedding)
        assert all(not torch.equal(f, p) for f, p in pairs)
        return
    stem, stem_pre = pairs[0]
    assert torch.equal(F.relu(stem_pre), stem) and stem_pre.min() < 0
    for f, p in pairs[1:]:
        if name in LINEAR_STAGES:
            assert p is f
        else:
            assert torch.equal(F.relu(p), f) and p.min() < 0


@pytest.mark.parametrize("name", ZOO)
def test_works_at_16_px(name):
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 16))
    assert out.logits.shape == (2, 10)
    assert out.embedding.shape == (2, model.fc.in_features)


@pytest.mark.parametrize("name, millions", PUBLISHED_M.items())
def test_param_count_matches_published(name, millions):
    count = n_params(create_model(name, num_classes=100)) / 1e6
    assert count == pytest.approx(millions, abs=0.01)


def test_param_counts_match_the_reference_code_exactly():
    assert set(EXACT) == set(ZOO), "add the new model's reference count to EXACT"
    counts = {name: n_params(create_model(name, num_classes=100)) for name in ZOO}
    assert counts == EXACT


def test_zoo_names_leave_timm_names_alone():
    """Where a name clashes, timm keeps the plain name and the zoo's ends in _cifar."""
    assert not [name for name in ZOO if timm.is_model(name)]


def test_mobilenetv2_width_mult():
    full = create_model("mobilenetv2", num_classes=100, width_mult=1.0)
    assert full.feature_channels == [32, 24, 32, 96, 320]
    assert n_params(full) > 2 * EXACT["mobilenetv2"]
