"""Cross-modal distillation: teacher and student see different modalities of paired samples.

    kdrun algorithm=cross_modal                              # image teacher -> profile student
    kdrun algorithm=cross_modal algorithm.embedding_weight=1  # + embedding-space regression

Gupta, Hoffman & Malik, "Cross Modal Distillation for Supervision Transfer" (CVPR
2016): a network for a new modality learns to reproduce, on paired samples, the
representation a network trained on a labelled modality computes (an L2 loss on
the embedding). Aytar, Vondrick & Torralba, "SoundNet" (NeurIPS 2016): the student
of the other modality matches the teacher's class distributions (KL on the logits,
here the selected `loss=` terms, kd by default).

The teacher is trained once (teacher cache) on its own modality, the `data=` images.
The student never receives that modality: it is fed PairedBatch.x = x_student
(kdrun/data/paired.py) and evaluated on its own modality's val/test splits; only
TeacherModality reads x_teacher. Only methods that read logits or embedding
compose (feature maps of two modalities do not align). With algorithm.baseline
the same student is also trained on its modality alone (CE): student_alone_top1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import kdrun.models.signal  # noqa: F401  (registers the 1-D student models)
from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.data.paired import STUDENT_VIEWS, paired_views
from kdrun.engine import distributed
from kdrun.engine.assemble import build_student, train
from kdrun.engine.distiller import Distiller
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.losses import ce_weight, loss_class, needs_teacher
from kdrun.losses.feature.xmodal_embedding import EmbeddingTransfer
from kdrun.models.output import ModelOutput

SHARED_FIELDS = ("logits", "embedding")
DISTANCES = ("l2", "cosine")


@dataclass
class CrossModalConfig:
    """Gupta et al. 2016 (embedding regression, L2); Aytar et al. 2016 (logit transfer)."""

    name: str = "cross_modal"
    student_view: str = "profiles"    # the student's modality of the data= images: profiles
    #   (row and column means, 2C x S) | rows (row means only, C x S)
    # > 0: regress the teacher's embedding (Gupta et al.)
    embedding_weight: float = bounded(0.0, ge=0)
    embedding_distance: str = "l2"    # l2 (Gupta et al.) | cosine
    baseline: bool = True             # also train the student on its modality alone (CE)


class TeacherModality:
    """The frozen teacher, fed the teacher's modality of each paired batch."""

    def __init__(self, teacher):
        self.inner, self.model, self.name = teacher, teacher.model, teacher.name

    def __call__(self, batch) -> ModelOutput:
        return self.inner(batch.teacher_batch())


def check_config(cfg) -> None:
    algo = cfg.algorithm
    if not needs_teacher(cfg.loss):
        raise ConfigError("algorithm=cross_modal transfers from a teacher: pick a loss that reads "
                          "one (e.g. loss=kd, the default); loss=ce selects no teacher")
    for name in cfg.loss:
        cls = loss_class(name)
        other = [f for f in cls.requires if f not in SHARED_FIELDS]
        if cls.needs_teacher and other:
            raise ConfigError(f"loss={name} reads {', '.join(other)}, which two modalities do not "
                              f"share: use methods on logits or embedding (kd, dkd, dist, rkd, pkt, "
                              f"...) or algorithm.embedding_weight")
    if algo.student_view not in STUDENT_VIEWS:
        raise ConfigError(f"algorithm.student_view={algo.student_view}: use one of "
                          f"{', '.join(STUDENT_VIEWS)}")
    if algo.embedding_distance not in DISTANCES:
        raise ConfigError(f"algorithm.embedding_distance={algo.embedding_distance}: use "
                          f"{' or '.join(DISTANCES)}")
    if distributed.world_size() > 1:
        raise ConfigError("algorithm=cross_modal does not run data-parallel (torchrun): its paired "
                          "loader has no shards; run it in one process")
    if cfg.trainer.channels_last:
        raise ConfigError("trainer.channels_last=true does not apply to a 1-D student's "
                          "signals: set trainer.channels_last=false")


@torch.no_grad()
def probe_student(student: nn.Module, name: str, shape: tuple[int, ...],
                  num_classes: int) -> ModelOutput:
    """One dummy forward on the student's modality; a model that cannot read it fails here."""
    was = student.training
    try:
        out = student.eval()(torch.zeros(2, *shape))
    except (RuntimeError, ValueError) as e:
        out, error = None, f" ({str(e).splitlines()[0]})"
    else:
        error = ""
    student.train(was)
    if out is None or tuple(out.logits.shape) != (2, num_classes):
        raise ConfigError(f"student.name={name} cannot read the student's modality (inputs of "
                          f"shape {list(shape)}){error}: pick a 1-D model, e.g. student=signal_cnn")
    return out


@register_algorithm
class CrossModal(Plugin):
    """The student learns from its own view of each pair (`data`); the teacher reads the
    other (`objective`: TeacherModality); an optional embedding term (`losses`)."""

    name = "cross_modal"
    config = CrossModalConfig

    def check(self, cell) -> None:
        check_config(cell.cfg)

    def data(self, cell):
        cfg, algo = cell.cfg, cell.cfg.algorithm
        return paired_views(cell.data, algo.student_view, cfg.data.batch_size,
                            cfg.data.eval_batch_size, cfg.seed)

    def student(self, cell):
        cfg, paired = cell.cfg, cell.data
        student = build_student(cell)
        probe_student(student, cfg.student.name, paired.student_shape, paired.num_classes)
        return student, cfg.student.name

    def losses(self, cell, losses, student_probe, teacher_probe):
        if cell.cfg.algorithm.embedding_weight > 0:
            losses["xmodal_embedding"] = EmbeddingTransfer(cell.cfg.algorithm, student_probe,
                                                           teacher_probe)
        return losses

    def objective(self, cell, student, losses, teaching):
        return Distiller(student, losses, TeacherModality(teaching.teacher),
                         ce_weight(cell.cfg.loss))

    def result(self, cell, objective, result) -> dict:
        algo, paired = cell.cfg.algorithm, cell.data
        keys = {"student_view": algo.student_view, "teacher_input_shape": list(paired.teacher_shape),
                "student_input_shape": list(paired.student_shape)}
        if algo.baseline:  # the same student trained on its modality alone
            alone = build_student(cell)
            summary = train(cell, Distiller(alone), ckpt_dir=cell.dir / "checkpoints" / "alone",
                            tracker=cell.tracker.stage("alone"), desc="alone")
            keys.update(student_alone_top1=summary.student_top1,
                        transfer_gain_top1=result["student_top1"] - summary.student_top1)
        return keys
