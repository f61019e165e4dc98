"""Data-free distillation: the student never sees a training sample, only images
synthesised from the (pre-trained) teacher.

    kdrun algorithm=data_free                                   # DAFL generator
    kdrun algorithm=data_free algorithm.method=dfad             # adversarial generator
    kdrun algorithm=data_free algorithm.method=deepinversion    # inversion from BN statistics

The premise is that a trained teacher exists: it comes from teacher.checkpoint or
the teacher cache (trained once on `data=` if missing). The student's training
then reads only synthetic batches; `data=` supplies its evaluation splits (val
picks the best epoch, test is reported). With algorithm.reference=true the cell
also trains the same student on the real training split (checkpoints/with_data,
metrics.with_data.jsonl) and reports with_data_top1 and the gap.

Methods: DAFL (Chen et al., ICCV 2019) and DFAD (Fang et al., 2019) in
kdrun/algorithms/generators.py; DeepInversion (Yin et al., CVPR 2020) in
kdrun/algorithms/deep_inversion.py. The selected `loss=` methods (kd by default)
are the student's terms on synthetic batches, with the teacher's labels for CE.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
from torch import nn

from kdrun.config.bounds import bounded
from kdrun.algorithms.discriminator import PartMetrics
from kdrun.algorithms.generators import Generator, GeneratorDistiller, LatentLoader
from kdrun.algorithms.registry import register_algorithm, register_runner
from kdrun.config.errors import ConfigError
from kdrun.data.tensor_loader import TensorLoader
from kdrun.engine import distributed
from kdrun.engine.assemble import assemble_losses, build_student, probe_architecture, train
from kdrun.engine.distiller import Distiller
from kdrun.engine.evaluate import top1
from kdrun.losses import ce_weight, needs_teacher

METHODS = ("dafl", "dfad", "deepinversion")
GENERATOR_LR = {"dafl": 0.2, "dfad": 1e-3}  # the papers' MNIST settings (Adam)


@dataclass
class DataFreeConfig:
    """Chen et al. 2019 (DAFL); Fang et al. 2019 (DFAD); Yin et al. 2020 (DeepInversion).
    Method settings are the papers' (DAFL/DFAD on MNIST, DeepInversion on CIFAR-10); the
    run length is kdrun's small scale, with the papers' value in each comment."""

    name: str = "data_free"
    method: str = "dafl"              # dafl | dfad | deepinversion
    reference: bool = True            # also train the student on real data: with_data_top1
    # generator methods (dafl, dfad)
    steps_per_epoch: int = bounded(40, ge=1)  # synthetic batches per epoch (DAFL 120, DFAD 50)
    batch_size: int = bounded(128, ge=1)  # synthetic batch (DAFL, DFAD on MNIST: 512)
    latent_dim: int = bounded(100, ge=1)  # z size (DAFL, DFAD on MNIST: 100)
    # Adam; null = the method's (DAFL 0.2, DFAD 1e-3)
    generator_lr: Optional[float] = bounded(None, gt=0)
    one_hot: float = bounded(1.0, ge=0)  # DAFL generator terms (MNIST: oh 1, ie 5, a 0.1)
    info_entropy: float = bounded(5.0, ge=0)
    activation: float = bounded(0.1, ge=0)
    student_steps: int = bounded(5, ge=1)  # DFAD: student steps per generator step
    # deepinversion
    inversion_samples: int = bounded(256, ge=1)  # images in the synthetic pool
    inversion_batch: int = bounded(256, ge=1)  # images optimised together (paper: 256)
    inversion_iters: int = bounded(100, ge=1)  # Adam steps per batch (paper: 2000)
    inversion_lr: float = bounded(0.05, gt=0)  # paper (CIFAR-10): 0.05
    bn_weight: float = bounded(0.1, ge=0)  # BN-statistics term (paper: 10, over 2000 iterations; at
    #   100, 10 swamps the CE: the teacher labels 3% of the images as their targets, 100% at 0.1)
    tv_weight: float = bounded(2.5e-5, ge=0)  # total-variation prior (paper: 2.5e-5)
    l2_weight: float = bounded(0.0, ge=0)  # L2 prior (paper: 0)
    inversion_jitter: int = bounded(2, ge=0)  # random roll by up to this many pixels (paper: 2)


register_algorithm("data_free", DataFreeConfig)


@dataclass
class SyntheticData:
    """What fit() and the losses read instead of the DataBundle: synthetic train batches,
    the real val/test splits (evaluation only) and the facts models are built for."""

    name: str
    train: Any
    val: Any
    test: Any
    num_classes: int
    in_chans: int
    image_size: int


def check_config(cfg) -> None:
    algo = cfg.algorithm
    if algo.method not in METHODS:
        raise ConfigError(f"algorithm.method={algo.method}: use one of {', '.join(METHODS)}")
    if not needs_teacher(cfg.loss):
        raise ConfigError("algorithm=data_free learns from a teacher: pick a loss that reads one "
                          "(e.g. loss=kd, the default); loss=ce would train on nothing")
    if distributed.world_size() > 1:
        raise ConfigError("algorithm=data_free does not run data-parallel (torchrun): its "
                          "generator steps inside the objective; run it in one process")


def synthetic_pool(cell, teacher) -> tuple[TensorLoader, dict]:
    """DeepInversion's pool, labelled by the teacher; a shuffled loader over it."""
    from kdrun.algorithms.deep_inversion import synthesize_pool

    cfg, data = cell.cfg, cell.data
    if not any(isinstance(m, nn.BatchNorm2d) for m in teacher.model.modules()):
        raise ConfigError(f"algorithm.method=deepinversion needs BatchNorm statistics, which "
                          f"teacher.name={cfg.teacher.name} lacks: pick a teacher with BatchNorm2d")
    images, targets = synthesize_pool(teacher.model, cfg.algorithm, data.num_classes,
                                      (data.in_chans, data.image_size, data.image_size), cfg.seed,
                                      cell.dir / "checkpoints" / "inversion", cell.device)
    with torch.no_grad():
        labels = teacher.model.eval()(images.to(cell.device)).logits.argmax(1).cpu()
    loader = TensorLoader(images, labels, cfg.data.batch_size, shuffle=True,
                          drop_last=len(labels) > cfg.data.batch_size, seed=cfg.seed)
    agreement = 100.0 * (labels == targets).float().mean().item()
    return loader, {"inversion_teacher_agreement": agreement}


@register_runner("offline", "data_free")
def distill_without_data(cell) -> dict:
    from kdrun.algorithms.offline_cell import live_teacher

    cfg, data, algo = cell.cfg, cell.data, cell.cfg.algorithm
    check_config(cfg)
    teacher, record = live_teacher(cell)  # the premise: a trained teacher exists
    result: dict = {"teacher": cfg.teacher.name, "teacher_source": record.source,
                    "teacher_key": record.key, "teacher_path": str(record.path),
                    "teacher_top1": top1(teacher.model, data.test, cell.device),
                    "data_free_method": algo.method}
    if algo.method == "deepinversion":
        train_loader, extra = synthetic_pool(cell, teacher)
        result.update(extra, synthetic_samples=train_loader.num_samples)
    else:
        train_loader = LatentLoader(algo.steps_per_epoch, algo.batch_size, algo.latent_dim, cfg.seed)
        result["synthetic_samples"] = cfg.trainer.epochs * train_loader.num_samples
    synthetic = replace(cell, data=SyntheticData(f"synthetic:{algo.method}", train_loader,
                                                 data.val, data.test, data.num_classes,
                                                 data.in_chans, data.image_size))
    student = build_student(synthetic)
    losses = assemble_losses(synthetic, cfg.loss, student, cfg.student.name,
                             probe_architecture(cfg.teacher, "teacher", data), cfg.teacher.name)
    for loss in losses.values():
        loss.bind_teacher(teacher.model)
    if algo.method == "deepinversion":
        objective = Distiller(student, losses, teacher, ce_weight(cfg.loss))
    else:
        generator = Generator(algo.latent_dim, data.in_chans, data.image_size)
        lr = algo.generator_lr if algo.generator_lr is not None else GENERATOR_LR[algo.method]
        objective = GeneratorDistiller(student, losses, teacher, ce_weight(cfg.loss), generator,
                                       algo, lr)
        result["generator_params"] = sum(p.numel() for p in generator.parameters())
    tracked = replace(synthetic, tracker=PartMetrics(cell.tracker, lambda: [objective]))
    summary = train(tracked, objective)
    result.update(summary.as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    result["teacher_agreement"] = cell.tracker.metrics.read()[-1]["train_top1"]
    if algo.reference:
        result.update(train_with_data(cell, teacher, result["student_top1"]))
    return result


def train_with_data(cell, teacher, data_free_top1: float) -> dict:
    """The same student, losses and epochs on the real training split: the reference."""
    cfg = cell.cfg
    student = build_student(cell)
    losses = assemble_losses(cell, cfg.loss, student, cfg.student.name,
                             probe_architecture(cfg.teacher, "teacher", cell.data), cfg.teacher.name)
    for loss in losses.values():
        loss.bind_teacher(teacher.model)
    summary = train(cell, Distiller(student, losses, teacher, ce_weight(cfg.loss)),
                    ckpt_dir=cell.dir / "checkpoints" / "with_data",
                    tracker=cell.tracker.stage("with_data"), desc="with_data")
    return {"with_data_top1": summary.student_top1,
            "with_data_best_top1": summary.best_student_top1,
            "gap_top1": summary.student_top1 - data_free_top1}
