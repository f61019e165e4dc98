"""Quantisation-aware training with torch.ao fake-quant, and export to the integer grid.

Every Conv1d/Conv2d/Linear of the student gets
- a weight parametrization: torch.ao.quantization.FakeQuantize, per output channel,
  symmetric, on the restricted grid {-(2^(b-1) - 1), ..., 2^(b-1) - 1} (at most 2^b - 1
  values; b = 2 is ternary, as Apprentice's lowest precision). The scale follows the
  current weights (max |w| / (2^(b-1) - 1)), recomputed each forward.
- an input FakeQuantize (per tensor, affine, unsigned a-bit grid) whose moving-average
  min/max observer learns in training mode and is frozen in eval mode.
Gradients pass straight through the rounding (STE), so the float "shadow" weights
keep learning while every forward sees the quantised network (Jacob et al. 2018).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver)
from torch.nn.utils import parametrize

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
FORMAT = "kdrun.quantized/1"


def weight_fake_quant(bits: int) -> FakeQuantize:
    qmax = 2 ** (bits - 1) - 1
    return FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0,
                        quant_min=-qmax, quant_max=qmax, dtype=torch.qint8,
                        qscheme=torch.per_channel_symmetric, ch_axis=0)


def activation_fake_quant(bits: int) -> FakeQuantize:
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0,
                        quant_max=2**bits - 1, dtype=torch.quint8,
                        qscheme=torch.per_tensor_affine)


class WeightFakeQuant(nn.Module):
    """Parametrization: weight -> its fake-quantised value (observer always on: weights only)."""

    def __init__(self, bits: int):
        super().__init__()
        self.fake_quant = weight_fake_quant(bits)

    def forward(self, weight: Tensor) -> Tensor:
        return self.fake_quant(weight)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    module.input_quant.enable_observer(module.training)  # learn ranges in training only
    return (module.input_quant(args[0]), *args[1:])


def attach_fake_quant(model: nn.Module, bits: int, act_bits: int | None) -> list[str]:
    """Make `model` quantisation-aware in place; returns the names of its quantised layers."""
    names = []
    for name, module in list(model.named_modules()):
        if isinstance(module, QUANTIZABLE):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(bits))
            if act_bits:
                module.input_quant = activation_fake_quant(act_bits)
                module.register_forward_pre_hook(_quantize_input)
            names.append(name)
    return names


@contextmanager
def fake_quant_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The float network behind the fake quantisers (the shadow weights)."""
    quantizers = [m for m in model.modules() if isinstance(m, FakeQuantize)]
    for fq in quantizers:
        fq.disable_fake_quant()
    try:
        yield model
    finally:
        for fq in quantizers:
            fq.enable_fake_quant()


def _channel_view(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *[1] * (like.dim() - 1))


@torch.no_grad()
def quantized_state(model: nn.Module, bits: int, act_bits: int | None) -> dict[str, Any]:
    """The export: int8 codes + per-channel scales of every quantised weight, the input
    quantisers' (scale, zero_point), and the remaining float tensors (biases, BatchNorm).
    Only tensors, numbers and strings: torch.load(weights_only=True) reads it."""
    weights, scales, inputs = {}, {}, {}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        fq = module.parametrizations.weight[0].fake_quant
        w = module.parametrizations.weight.original
        fq(w)  # the scale of the current weights, as the forward pass uses it
        inv = _channel_view(1.0 / fq.scale, w)  # the kernel's w * (1 / scale) and round-half-even
        weights[name] = torch.clamp(torch.round(w * inv), fq.quant_min, fq.quant_max).to(torch.int8)
        scales[name] = fq.scale.clone()
        if hasattr(module, "input_quant"):
            inputs[name] = {"scale": module.input_quant.scale.clone(),
                            "zero_point": module.input_quant.zero_point.clone()}
    floats = {k: v.clone() for k, v in model.state_dict().items()
              if "parametrizations." not in k and "input_quant." not in k}
    return {"format": FORMAT, "bits": bits, "act_bits": act_bits or 0, "weights": weights,
            "weight_scales": scales, "input_quant": inputs, "float": floats}


@torch.no_grad()
def load_quantized(state: dict[str, Any], model: nn.Module) -> nn.Module:
    """A fresh float `model` (same architecture) made to compute what the exported one does."""
    if state.get("format") != FORMAT:
        raise ValueError(f"not a kdrun quantized export (format {state.get('format')!r})")
    attach_fake_quant(model, state["bits"], state["act_bits"] or None)
    missing, unexpected = model.load_state_dict(state["float"], strict=False)
    missing = [k for k in missing if "parametrizations." not in k and "input_quant." not in k]
    if missing or unexpected:
        raise ValueError(f"export does not fit this model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for name, codes in state["weights"].items():
        module = model.get_submodule(name)
        original = module.parametrizations.weight.original
        original.copy_(codes.float() * _channel_view(state["weight_scales"][name], original))
    for name, qparams in state["input_quant"].items():
        fq = model.get_submodule(name).input_quant
        fq.scale.resize_(qparams["scale"].shape).copy_(qparams["scale"])
        fq.zero_point.resize_(qparams["zero_point"].shape).copy_(qparams["zero_point"])
        fq.disable_observer()
    return model.eval()


def model_bytes(state: dict[str, Any]) -> dict[str, int]:
    """Parameter bytes in fp32, and with the quantised weights packed at `bits` bits
    (+ fp32 per-channel scales, fp32 biases/BatchNorm parameters, 8 bytes per input
    quantiser). BatchNorm running statistics are buffers, counted in neither."""
    bits = state["bits"]
    quantised = sum(q.numel() for q in state["weights"].values())
    other = sum(v.numel() for k, v in state["float"].items()
                if v.is_floating_point() and "running_" not in k)
    packed = sum(math.ceil(q.numel() * bits / 8) for q in state["weights"].values())
    scales = sum(s.numel() for s in state["weight_scales"].values())
    return {"model_bytes_fp32": 4 * (quantised + other),
            "model_bytes_quantized": packed + 4 * scales + 4 * other + 8 * len(state["input_quant"])}
