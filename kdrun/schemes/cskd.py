"""Class-wise self-KD: Yun, Park, Lee & Shin, "Regularizing Class-wise Predictions via
Self-knowledge Distillation" (CVPR 2020).

Every training sample x is paired with another sample x' of the same class; the
network's prediction on x' (computed in train mode without gradient, as in the
authors' code) teaches its prediction on x:
    CE(f(x), y) + lambda * T^2 KL(p(x'; T) || p(x; T))        (lambda = 1, T = 4)
through the selected methods (loss=kd with loss.kd.temperature=4 and alpha=0.5 is the
paper's objective, halved). Feature and relation methods compose too: x' stands
in for the teacher's input (e.g. loss=sp asks a batch and its same-class partners
to have the same similarity structure).

Partners are drawn from the training loader's labels with a torch.Generator
seeded by (seed, epoch), so a resumed epoch sees the same pairs; a sample is
paired with a different sample of its class whenever the class has one (the
authors' sampler may draw the sample itself).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import Tensor

from kdrun.data.batch import Batch
from kdrun.data.seeds import torch_generator
from kdrun.engine.assemble import assemble_losses, build_student, probe, train
from kdrun.engine.distiller import Distiller
from kdrun.losses import ce_weight
from kdrun.models.output import ModelOutput
from kdrun.schemes.composition import require_composable, require_no_pretraining


@dataclass(frozen=True)
class PairedBatch(Batch):
    """A training batch plus `pair`: one same-class sample for each of its samples."""

    pair: Batch | None = None

    def to(self, device, non_blocking: bool = False) -> "PairedBatch":
        moved = Batch.to(self, device, non_blocking)
        return PairedBatch(moved.x, moved.y, moved.index, moved.view,
                           None if self.pair is None else self.pair.to(device, non_blocking))


class ClassPartners:
    """Draws, for sample indices, another training sample index of the same class."""

    def __init__(self, labels: Tensor):
        labels = labels.long()
        self.order = torch.argsort(labels, stable=True)          # indices grouped by class
        counts = torch.bincount(labels)
        self.start = torch.cumsum(counts, 0) - counts             # first slot of each class
        self.count = counts
        self.labels = labels
        self.slot = torch.empty_like(self.order)                  # position within the class
        self.slot[self.order] = torch.arange(len(labels)) - self.start[labels[self.order]]

    def draw(self, index: Tensor, generator: torch.Generator) -> Tensor:
        c = self.labels[index]
        n, own = self.count[c], self.slot[index]
        r = (torch.rand(index.shape[0], generator=generator) * (n - 1).clamp(min=1)).long()
        r = torch.minimum(r, (n - 2).clamp(min=0))
        pick = torch.where(n > 1, r + (r >= own).long(), own)     # skip the sample itself
        return self.order[self.start[c] + pick]


def partner_batch(loader, index: Tensor, generator: torch.Generator) -> Batch:
    """The samples `index` of the loader's split, augmented like training samples."""
    if hasattr(loader, "images"):  # in-memory TensorLoader
        x = loader.images.index_select(0, index)
        if getattr(loader, "views", None) is not None:
            view = torch.randint(0, loader.aug_views, index.shape, generator=generator)
            x = loader.augment.apply_view(x, loader.views, view, index)
        elif loader.augment is not None:
            x = loader.augment(x, generator)
        return Batch(x, loader.labels.index_select(0, index), index)
    from kdrun.data.folder_loader import collate_batch  # image folders: decode the partners

    return collate_batch([loader.dataset[i] for i in index.tolist()])


class ClassPairedLoader:
    """The training loader, each batch carrying its same-class partners (`batch.pair`)."""

    def __init__(self, loader, seed: int):
        self.loader, self.seed, self.epoch = loader, seed, 0
        self.partners = ClassPartners(loader.labels)
        if hasattr(loader, "shard"):  # data-parallel: each rank reads its share of the anchors
            self.shard = loader.shard

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    @property
    def labels(self) -> Tensor:
        return self.loader.labels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[PairedBatch]:
        generator = torch_generator(self.seed, "cskd_pairs", self.epoch)
        for batch in self.loader:
            pair = partner_batch(self.loader, self.partners.draw(batch.index, generator), generator)
            yield PairedBatch(batch.x, batch.y, batch.index, batch.view, pair)


class PartnerTeacher:
    """The learner itself, on the same-class partners: train mode, no gradient."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @torch.no_grad()
    def __call__(self, batch: PairedBatch) -> ModelOutput:
        return self.model(batch.pair.x).detach()


def run_cskd(cell) -> dict:
    cfg = cell.cfg
    require_composable(cfg.loss, "scheme=self scheme.method=cskd",
                       "the network itself on same-class samples")
    student = build_student(cell)
    losses = assemble_losses(cell, cfg.loss, student, cfg.student.name,
                             probe(student, cell.data), cfg.student.name)
    require_no_pretraining(losses, "scheme=self scheme.method=cskd")
    paired = replace(cell.data, train=ClassPairedLoader(cell.data.train, cfg.seed))
    objective = Distiller(student, losses, PartnerTeacher(student), ce_weight(cfg.loss))
    summary = train(replace(cell, data=paired), objective)
    return {**summary.as_dict(), "student_params": sum(p.numel() for p in student.parameters())}
