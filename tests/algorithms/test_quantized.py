"""quantized: the student's weights take at most 2^bits values per output channel, and the
integer export loads (weights_only) and computes what the trained fake-quant student does."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY
from torch.nn.utils import parametrize

from kdrun.algorithms.fake_quant import (attach_fake_quant, fake_quant_disabled, load_quantized,
                                         model_bytes, quantized_state)
from kdrun.config.errors import ConfigError
from kdrun.data import build_data
from kdrun.engine.cell import run_cell
from kdrun.models import create_model


def distinct_per_channel(weight: torch.Tensor) -> int:
    return max(len(torch.unique(row)) for row in weight.flatten(1))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantised_weights_take_at_most_2_to_the_bits_values_per_channel(bits):
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_chans=1)
    layers = attach_fake_quant(model, bits, act_bits=8)
    assert len(layers) == 10  # every conv and the classifier
    out = model(torch.randn(8, 1, 32, 32))  # training mode: observers learn ranges
    out.logits.sum().backward()
    richer = 0
    for name in layers:
        module = model.get_submodule(name)
        weight = module.weight.detach()
        assert distinct_per_channel(weight) <= 2**bits
        scale = module.parametrizations.weight[0].fake_quant.scale.view(-1, *[1] * (weight.dim() - 1))
        codes = weight / scale
        torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)  # an integer grid
        shadow = module.parametrizations.weight.original
        assert shadow.grad is not None and shadow.grad.abs().sum() > 0  # straight-through
        richer += distinct_per_channel(shadow.detach()) > 2**bits  # the float weights behind it
    assert richer > 0
    with fake_quant_disabled(model):
        conv = model.get_submodule(layers[0])
        assert torch.equal(conv.weight, conv.parametrizations.weight.original)


def test_export_reloads_into_a_fresh_model_with_identical_outputs():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_chans=1)
    attach_fake_quant(model, 4, 8)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 32, 32))
    model.eval()
    state = quantized_state(model, 4, 8)
    assert all(q.dtype == torch.int8 and q.abs().max() <= 7 for q in state["weights"].values())
    x = torch.randn(4, 1, 32, 32)
    fresh = load_quantized(state, create_model("resnet8", num_classes=10, in_chans=1))
    torch.testing.assert_close(fresh(x).logits, model(x).logits, rtol=0, atol=1e-5)
    sizes = model_bytes(state)
    n_params = sum(p.numel() for p in create_model("resnet8", 10, 1).parameters())
    assert sizes["model_bytes_fp32"] == 4 * n_params
    assert sizes["model_bytes_quantized"] < sizes["model_bytes_fp32"] / 6  # 4-bit + overheads


def test_quantized_cell_exports_an_integer_student_that_loads(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=quantized", "algorithm.bits=2"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["bits"] == 2
    assert result["quantized_top1"] == result["student_top1"]
    assert result["export_top1"] == result["quantized_top1"]  # the export is the same network
    assert 0 <= result["float_top1"] <= 100
    assert result["model_bytes_quantized"] < result["model_bytes_fp32"] / 8
    assert result["model_bytes_fp32"] == 4 * result["student_params"]

    export = torch.load(tmp_path / "cell" / "quantized_student.pt", weights_only=True)
    assert export["bits"] == 2 and export["act_bits"] == 8
    for name, codes in export["weights"].items():
        assert codes.dtype == torch.int8
        assert distinct_per_channel(codes) <= 2**2 and codes.abs().max() <= 1  # ternary grid
    # the trained student (last.pt) and the reloaded export give the same logits
    trained = create_model("resnet8", num_classes=10, in_chans=1)
    attach_fake_quant(trained, 2, 8)
    last = torch.load(tmp_path / "cell" / "checkpoints" / "last.pt", weights_only=True)["model"]
    trained.load_state_dict({k[len("student."):]: v for k, v in last.items()
                             if k.startswith("student.")})
    exported = load_quantized(export, create_model("resnet8", num_classes=10, in_chans=1))
    x = next(iter(build_data(compose_cfg(overrides).data, 0).test)).x
    with torch.no_grad():
        torch.testing.assert_close(exported(x).logits, trained.eval()(x).logits, rtol=0, atol=1e-5)
    for module in trained.modules():
        if parametrize.is_parametrized(module, "weight"):
            assert distinct_per_channel(module.weight.detach()) <= 2**2


@pytest.mark.parametrize("override,key", [("algorithm.bits=1", "algorithm.bits"),
                                          ("algorithm.act_bits=16", "algorithm.act_bits")])
def test_bad_bits_fail_before_training(override, key, compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=quantized", override]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()
