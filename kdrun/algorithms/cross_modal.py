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

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import kdrun.models.signal  # noqa: F401  (registers the 1-D student models)
from kdrun.config.bounds import bounded
from kdrun.algorithms.registry import register_algorithm, register_runner
from kdrun.config.errors import ConfigError
from kdrun.data.paired import STUDENT_VIEWS, paired_views
from kdrun.engine import distributed
from kdrun.engine.assemble import build_student, loss_context, probe_architecture, train
from kdrun.engine.distiller import Distiller
from kdrun.engine.evaluate import top1
from kdrun.losses import build_losses, ce_weight, check_outputs, loss_class, needs_teacher
from kdrun.losses.base import DistillationLoss
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


register_algorithm("cross_modal", CrossModalConfig)


class TeacherModality:
    """The frozen teacher, fed the teacher's modality of each paired batch."""

    def __init__(self, teacher):
        self.inner, self.model, self.name = teacher, teacher.model, teacher.name

    def __call__(self, batch) -> ModelOutput:
        return self.inner(batch.teacher_batch())


class EmbeddingTransfer(DistillationLoss):
    """A linear head maps the student's embedding into the teacher's space, where it
    regresses the teacher's embedding of the paired sample."""

    name = "xmodal_embedding"
    knowledge = "feature"
    requires = ("embedding",)

    def __init__(self, cfg, student: ModelOutput, teacher: ModelOutput):
        super().__init__(cfg, student, teacher)
        self.head = nn.Linear(student.embedding.shape[1], teacher.embedding.shape[1])

    def warmup_factor(self, epoch: int) -> float:
        return 1.0

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch) -> dict[str, Tensor]:
        s, t = self.head(student.embedding), teacher.embedding.detach()
        if self.cfg.embedding_distance == "cosine":
            value = 1.0 - F.cosine_similarity(s, t, dim=1).mean()
        else:
            value = F.mse_loss(s, t)
        return {"xmodal_embed": self.cfg.embedding_weight * value}


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


@register_runner("offline", "cross_modal")
def distill_across_modalities(cell) -> dict:
    from kdrun.schemes.offline import provide_teacher

    cfg, data, algo = cell.cfg, cell.data, cell.cfg.algorithm
    check_config(cfg)
    paired = paired_views(data, algo.student_view, cfg.data.batch_size, cfg.data.eval_batch_size,
                          cfg.seed)
    student_cell = replace(cell, data=paired)
    student = build_student(student_cell)
    student_out = probe_student(student, cfg.student.name, paired.student_shape, data.num_classes)
    teacher_out = probe_architecture(cfg.teacher, "teacher", data)
    check_outputs(cfg.loss, {"student": (cfg.student.name, student_out),
                             "teacher": (cfg.teacher.name, teacher_out)})
    losses = build_losses(cfg.loss, student_out, teacher_out, loss_context(paired))
    if algo.embedding_weight > 0:
        losses["xmodal_embedding"] = EmbeddingTransfer(algo, student_out, teacher_out)
    teacher, record = provide_teacher(cell)  # trained on the teacher's modality (data=)
    for loss in losses.values():
        loss.bind_teacher(teacher.model)
    result = {"teacher_source": record.source, "teacher_key": record.key,
              "teacher_path": str(record.path),
              "teacher_top1": top1(teacher.model, data.test, cell.device),
              "student_view": algo.student_view, "teacher_input_shape": list(paired.teacher_shape),
              "student_input_shape": list(paired.student_shape)}
    objective = Distiller(student, losses, TeacherModality(teacher), ce_weight(cfg.loss))
    result.update(train(student_cell, objective).as_dict())
    result["student_params"] = sum(p.numel() for p in student.parameters())
    if algo.baseline:
        alone = build_student(student_cell)
        summary = train(student_cell, Distiller(alone), ckpt_dir=cell.dir / "checkpoints" / "alone",
                        tracker=cell.tracker.stage("alone"), desc="alone")
        result.update(student_alone_top1=summary.student_top1,
                      transfer_gain_top1=result["student_top1"] - summary.student_top1)
    return result
