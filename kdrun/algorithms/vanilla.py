"""Vanilla distillation: one teacher, one student, the selected loss terms summed.

Everything that can fail is checked before the teacher trains: model names,
loss stages and connector sizes come from untrained probe forwards. Methods
with a pre-distillation stage (FitNet's hints, ...) run it first, each with its
own resumable checkpoint.
"""

from __future__ import annotations

import torch

from kdrun.engine.distiller import Distiller, PretrainStage
from kdrun.engine.evaluate import top1
from kdrun.engine.loop import fit
from kdrun.losses import LossContext, build_losses, ce_weight, check_outputs, needs_teacher
from kdrun.models.build import build_model


@torch.no_grad()
def probe(model: torch.nn.Module, data) -> object:
    """One dummy forward (eval mode, no grad) whose shapes size connectors."""
    was_training = model.training
    model.eval()
    out = model(torch.zeros(2, data.in_chans, data.image_size, data.image_size))
    model.train(was_training)
    return out


def loss_context(data) -> LossContext:
    return LossContext(num_train=data.train.num_samples, num_classes=data.num_classes,
                       in_chans=data.in_chans, image_size=data.image_size)


def run(cell) -> dict:
    cfg, data = cell.cfg, cell.data
    with_teacher = needs_teacher(cfg.loss)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, "student", data.num_classes, data.in_chans)
    teacher_probe = None
    if with_teacher:
        with torch.random.fork_rng(devices=[]):
            arch = build_model(cfg.teacher, "teacher", data.num_classes, data.in_chans,
                               load_checkpoint=False)
            teacher_probe = probe(arch, data)
        del arch
    student_probe = probe(student, data)
    outputs = {"student": (cfg.student.name, student_probe)}
    if with_teacher:
        outputs["teacher"] = (cfg.teacher.name, teacher_probe)
    check_outputs(cfg.loss, outputs)
    losses = build_losses(cfg.loss, student_probe, teacher_probe, loss_context(data))

    result: dict = {"teacher_top1": None, "teacher_source": None}
    teacher = None
    if with_teacher:
        from kdrun.schemes.offline import provide_teacher

        teacher, record = provide_teacher(cell)
        for loss in losses.values():
            loss.bind_teacher(teacher.model)
        result.update(teacher_source=record.source, teacher_key=record.key,
                      teacher_path=str(record.path),
                      teacher_top1=top1(teacher.model, data.test, cell.device))
    objective = Distiller(student, losses, teacher, ce_weight(cfg.loss))
    common = dict(optim=cfg.optim, sched=cfg.sched, device=cell.device,
                  grad_clip=cfg.trainer.grad_clip, progress=cfg.trainer.progress)
    for name, loss in losses.items():
        if loss.pretrain_epochs > 0:
            stage = f"pretrain_{name}"
            fit(PretrainStage(objective, name), data, epochs=loss.pretrain_epochs,
                ckpt_dir=cell.dir / "checkpoints" / stage, tracker=cell.tracker.stage(stage),
                desc=stage, **common)
    summary = fit(objective, data, epochs=cfg.trainer.epochs, ckpt_dir=cell.dir / "checkpoints",
                  tracker=cell.tracker, **common)
    result.update(summary.as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    return result
