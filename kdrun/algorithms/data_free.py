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
from kdrun.tracking.part_metrics import PartMetrics
from kdrun.algorithms.generators import Generator, GeneratorDistiller, LatentLoader
from kdrun.config.errors import ConfigError
from kdrun.data.tensor_loader import TensorLoader
from kdrun.engine import distributed
from kdrun.engine.assemble import assemble_losses, build_student, probe_architecture, train
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.engine.distiller import Distiller
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


class PendingPool:
    """DeepInversion's pool before it exists: its size sizes the losses (memory banks); the
    pool itself is inverted from the teacher when training starts (`train`)."""

    def __init__(self, num_samples: int):
        self.num_samples = num_samples


@register_algorithm
class DataFree(Plugin):
    """The student never reads a training sample: it learns from generated images (`data`,
    `objective`: a generator trained against it) or from images inverted from the teacher's
    BatchNorm statistics (`train`: the pool is made once the teacher exists)."""

    name = "data_free"
    config = DataFreeConfig
    live_teacher = True  # the outputs on generated images cannot be cached

    def check(self, cell) -> None:
        check_config(cell.cfg)
        self.real = cell.data

    def data(self, cell):
        algo, data, seed = cell.cfg.algorithm, cell.data, cell.cfg.seed
        train = (PendingPool(algo.inversion_samples) if algo.method == "deepinversion" else
                 LatentLoader(algo.steps_per_epoch, algo.batch_size, algo.latent_dim, seed))
        return SyntheticData(f"synthetic:{algo.method}", train, data.val, data.test,
                             data.num_classes, data.in_chans, data.image_size)

    def objective(self, cell, student, losses, teaching):
        cfg, algo = cell.cfg, cell.cfg.algorithm
        self.teacher = teaching.teacher
        if algo.method == "deepinversion":
            return None  # the plain Distiller, on the inverted pool
        generator = Generator(algo.latent_dim, cell.data.in_chans, cell.data.image_size)
        self.generator_params = sum(p.numel() for p in generator.parameters())
        lr = algo.generator_lr if algo.generator_lr is not None else GENERATOR_LR[algo.method]
        return GeneratorDistiller(student, losses, teaching.teacher, ce_weight(cfg.loss),
                                  generator, algo, lr)

    def tracker(self, cell, objective):
        return PartMetrics(cell.tracker, lambda: [objective])

    def train(self, cell, objective):
        algo = cell.cfg.algorithm
        self.keys = {"data_free_method": algo.method}
        if algo.method != "deepinversion":
            self.keys.update(synthetic_samples=cell.cfg.trainer.epochs * cell.data.train.num_samples,
                             generator_params=self.generator_params)
            return None  # the builder's fit on generated batches
        pool, agreement = synthetic_pool(cell, self.teacher)
        self.keys.update(agreement, synthetic_samples=pool.num_samples)
        return train(replace(cell, data=replace(cell.data, train=pool)), objective)

    def result(self, cell, objective, result) -> dict:
        keys = {**self.keys, "teacher_agreement": cell.tracker.metrics.read()[-1]["train_top1"]}
        if cell.cfg.algorithm.reference:
            real = replace(cell, data=self.real)
            keys.update(train_with_data(real, self.teacher, result["student_top1"]))
        return keys


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
