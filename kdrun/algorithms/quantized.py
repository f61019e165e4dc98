"""Quantised distillation: a low-precision student learns from a full-precision teacher.

    kdrun algorithm=quantized                          # 4-bit weights, 8-bit activations
    kdrun algorithm=quantized algorithm.bits=2         # ternary weights
    kdrun algorithm=quantized loss.kd.temperature=1 loss.kd.alpha=0.5   # Apprentice's loss

Polino, Pascanu & Alistarh, "Model compression via distillation and quantization"
(ICLR 2018): quantised distillation trains the quantised student on the teacher's
soft targets, keeping full-precision shadow weights that the rounding's straight-
through gradient updates. Mishra & Marr, "Apprentice: Using Knowledge Distillation
Techniques To Improve Low-Precision Network Accuracy" (ICLR 2018): a full-precision
teacher distils into a low-precision (ternary, 4-bit, 8-bit) student; its loss is
CE(y, p_S) + CE(p_T, p_S) at T = 1, i.e. loss.kd.temperature=1 loss.kd.alpha=0.5.

The selected `loss=` terms run between the float teacher and the fake-quant student
(kdrun/algorithms/fake_quant.py). THE student, evaluated each epoch and reported as
student_top1, is the quantised one. At the end its integer weights are exported to
<cell>/quantized_student.pt, read back with weights_only=True into a fresh model and
scored (export_top1); result.json gives the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from kdrun.config.bounds import bounded
from kdrun.algorithms.fake_quant import (attach_fake_quant, fake_quant_disabled, load_quantized,
                                         model_bytes, quantized_state)
from kdrun.engine.assemble import build_student
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.tracking.checkpoint import load_file, save_atomic
from kdrun.engine.evaluate import top1
from kdrun.models.build import build_model

EXPORT = "quantized_student.pt"


@dataclass
class QuantizedConfig:
    """Polino et al. 2018 (quantised distillation); Mishra & Marr 2018 (Apprentice, whose
    low-precision students have 4-bit or ternary weights and 8-bit activations)."""

    name: str = "quantized"
    # weight bits, per output channel (2 = ternary ... 8)
    bits: int = bounded(4, ge=2, le=8, why="2 = ternary, 8 = int8")
    # bits of every quantised layer's input; null = float
    act_bits: Optional[int] = bounded(8, ge=2, le=8, why="or null for float activations")


@register_algorithm
class Quantized(Plugin):
    """A fake-quant student (its own `student` extension point) distilled as usual; after
    training its integer export is written, reloaded and scored (`result`)."""

    name = "quantized"
    config = QuantizedConfig

    def student(self, cell):
        algo = cell.cfg.algorithm
        student = build_student(cell)
        self.layers = attach_fake_quant(student, algo.bits, algo.act_bits)
        return student, cell.cfg.student.name

    def result(self, cell, objective, result) -> dict:
        cfg, algo, student = cell.cfg, cell.cfg.algorithm, objective.student
        with fake_quant_disabled(student):
            float_top1 = top1(student, cell.data.test, cell.device)
        state = quantized_state(student, algo.bits, algo.act_bits)
        path = cell.dir / EXPORT
        save_atomic(state, path)
        with torch.random.fork_rng(devices=[]):  # a fresh architecture to load the export into
            fresh = build_model(cfg.student, "student", cell.data.num_classes,
                                cell.data.in_chans, load_checkpoint=False)
        exported = load_quantized(load_file(path), fresh)
        return dict(quantized_top1=result["student_top1"],
                    float_top1=float_top1,
                    export_top1=top1(exported.to(cell.device), cell.data.test, cell.device),
                    export_path=str(path), export_bytes=path.stat().st_size, bits=algo.bits,
                    act_bits=algo.act_bits, quantized_layers=len(self.layers),
                    **model_bytes(state))
