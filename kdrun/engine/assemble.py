"""Building blocks every scheme and algorithm assembles a cell from.

Probe forwards size connectors before anything trains, so a bad stage index or a
missing ModelOutput field fails before the teacher is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdrun.engine import distributed
from kdrun.engine.distiller import Distiller, PretrainStage
from kdrun.engine.loop import FitResult, fit
from kdrun.losses import LossContext, build_losses, check_outputs
from kdrun.models.build import build_model
from kdrun.models.output import ModelOutput


@torch.no_grad()
def probe(model: nn.Module, data) -> ModelOutput:
    """One dummy forward (eval mode, no grad) whose shapes size connectors."""
    was_training = model.training
    model.eval()
    shape = getattr(data, "input_shape", None) or (data.in_chans, data.image_size, data.image_size)
    out = model(torch.zeros(2, *shape, dtype=getattr(data, "input_dtype", torch.float32)))
    model.train(was_training)
    return out


def probe_architecture(model_cfg: Any, role: str, data) -> ModelOutput:
    """Probe output of an untrained instance (the RNG stream is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_cfg, role, data.num_classes, data.in_chans, load_checkpoint=False)
        return probe(model, data)


def loss_context(data) -> LossContext:
    return LossContext(num_train=data.train.num_samples, num_classes=data.num_classes,
                       in_chans=data.in_chans, image_size=data.image_size)


def build_student(cell, model_cfg: Any = None, role: str = "student") -> nn.Module:
    """The student, initialised from `seed` (or its checkpoint, when given)."""
    torch.manual_seed(cell.cfg.seed)
    model_cfg = model_cfg if model_cfg is not None else cell.cfg.student
    return build_model(model_cfg, role, cell.data.num_classes, cell.data.in_chans)


def assemble_losses(cell, loss_cfg: Any, student: nn.Module, student_name: str,
                    teacher_probe: ModelOutput | None, teacher_name: str | None) -> nn.ModuleDict:
    """Check the methods against both models' outputs and size their learnable parts."""
    student_probe = probe(student, cell.data)
    outputs = {"student": (student_name, student_probe)}
    if teacher_probe is not None:
        outputs["teacher"] = (teacher_name, teacher_probe)
    check_outputs(loss_cfg, outputs)
    return build_losses(loss_cfg, student_probe, teacher_probe, loss_context(cell.data))


def runtime_options(cell) -> dict:
    """fit() keyword arguments that come from `trainer` (device, AMP, DDP lr scaling, ...)."""
    t = cell.cfg.trainer
    return dict(device=cell.device, grad_clip=t.grad_clip, progress=t.progress, amp=t.amp,
                channels_last=t.channels_last,
                lr_scale=distributed.world_size() if t.scale_lr else 1.0, accumulate=t.accumulate,
                task=getattr(cell, "task", None))


def train(cell, objective: nn.Module, ckpt_dir: Path | None = None, tracker=None,
          epochs: int | None = None, desc: str = "student") -> FitResult:
    """Run the losses' pre-training stages (if any), then the main training of `objective`."""
    cfg = cell.cfg
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else cell.dir / "checkpoints"
    tracker = tracker if tracker is not None else cell.tracker
    common = dict(optim=cfg.optim, sched=cfg.sched, **runtime_options(cell))
    if isinstance(objective, Distiller):
        for name, loss in objective.losses.items():
            if loss.pretrain_epochs > 0:
                stage = f"pretrain_{name}"
                fit(PretrainStage(objective, name), cell.data, epochs=loss.pretrain_epochs,
                    ckpt_dir=ckpt_dir / stage, tracker=tracker.stage(stage), desc=stage, **common)
    return fit(objective, cell.data, epochs=epochs or cfg.trainer.epochs, ckpt_dir=ckpt_dir,
               tracker=tracker, desc=desc, **common)
