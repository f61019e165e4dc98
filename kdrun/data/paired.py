"""Paired samples in two modalities, for cross-modal distillation.

A PairedBatch carries the teacher's modality (x_teacher) and the student's
(x_student) of the same samples, their label and index. Its `x` is the student's
view, so anything written for Batch (the Distiller, the loop) feeds the student
x_student; the teacher's view is reached only through `teacher_batch()`, which the
cross-modal teacher wrapper calls. A paired loader yields PairedBatch; the student's
val/test loaders yield plain Batch of its own modality only.

Demo pair that works offline: an in-memory image set (digits by default) is the
teacher's modality; the student's is its intensity `profiles`, a 1-D signal with
2C channels of length S: the mean of every image row and of every image column
(the projections a line-scan sensor would record), normalized with train statistics;
`rows` keeps the row means only (C channels), a weaker modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.data.preprocess import channel_stats
from kdrun.data.seeds import torch_generator
from kdrun.data.tensor_loader import TensorLoader


@dataclass(frozen=True)
class PairedBatch:
    x_teacher: Tensor
    x_student: Tensor
    y: Tensor
    index: Tensor

    @property
    def x(self) -> Tensor:
        """What the student sees: its own modality."""
        return self.x_student

    @property
    def view(self) -> None:  # paired batches are unaugmented (teacher-output cache: view 0)
        return None

    def teacher_batch(self) -> Batch:
        """The same samples in the teacher's modality, for the teacher only."""
        return Batch(self.x_teacher, self.y, self.index)

    def to(self, device, non_blocking: bool = False) -> "PairedBatch":
        return PairedBatch(*(t.to(device, non_blocking=non_blocking)
                             for t in (self.x_teacher, self.x_student, self.y, self.index)))

    def __len__(self) -> int:
        return int(self.y.shape[0])


class PairedLoader:
    """Shuffled batches of aligned (x_teacher, x_student, y); epoch e's order from (seed, e)."""

    def __init__(self, x_teacher: Tensor, x_student: Tensor, labels: Tensor, batch_size: int,
                 seed: int, drop_last: bool = True):
        if not len(x_teacher) == len(x_student) == len(labels):
            raise ValueError("paired modalities must have one row per sample")
        self.x_teacher, self.x_student, self.labels = x_teacher, x_student, labels
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.drop_last = drop_last and len(labels) > batch_size

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[PairedBatch]:
        order = torch.randperm(self.num_samples, generator=torch_generator(self.seed, "paired", self.epoch))
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield PairedBatch(self.x_teacher[index], self.x_student[index], self.labels[index], index)


def intensity_profiles(images: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, 2C, L): row means then column means (H = W = L)."""
    return torch.cat([images.mean(dim=3), images.mean(dim=2)], dim=1)


def row_profiles(images: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H): row means only, a weaker view (half of `profiles`)."""
    return images.mean(dim=3)


STUDENT_VIEWS: dict[str, Callable[[Tensor], Tensor]] = {"profiles": intensity_profiles,
                                                        "rows": row_profiles}


@dataclass
class PairedData:
    """What fit() reads for a cross-modal student: paired train batches, the student's
    modality for val/test, and the student's input facts (in_chans, length)."""

    name: str
    train: PairedLoader
    val: TensorLoader
    test: TensorLoader
    num_classes: int
    in_chans: int
    image_size: int                   # the student's signal length
    teacher_shape: tuple[int, ...]
    student_shape: tuple[int, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One student input's shape (what a probe forward feeds it)."""
        return self.student_shape


def paired_views(bundle: Any, view: str, batch_size: int, eval_batch_size: int,
                 seed: int) -> PairedData:
    """Pair each split of an in-memory image bundle with its `view` for the student."""
    if view not in STUDENT_VIEWS:
        raise ConfigError(f"algorithm.student_view={view}: use one of {', '.join(STUDENT_VIEWS)}")
    if not hasattr(bundle.train_plain, "images"):
        raise ConfigError(f"data={bundle.name} streams from disk; cross-modal pairs need an "
                          "in-memory set (digits, fashion_mnist, cifar10, cifar100)")
    make = STUDENT_VIEWS[view]
    train = make(bundle.train_plain.images)
    mean, std = channel_stats(train.unsqueeze(-1))
    norm = lambda s: (s - mean.view(1, -1, 1)) / std.view(1, -1, 1)  # noqa: E731
    student = {name: norm(make(getattr(bundle, name).images)) for name in ("val", "test")}
    train = norm(train)
    return PairedData(
        name=f"{bundle.name}:{view}",
        train=PairedLoader(bundle.train_plain.images, train, bundle.train_plain.labels,
                           batch_size, seed),
        val=TensorLoader(student["val"], bundle.val.labels, eval_batch_size),
        test=TensorLoader(student["test"], bundle.test.labels, eval_batch_size),
        num_classes=bundle.num_classes, in_chans=train.shape[1], image_size=train.shape[2],
        teacher_shape=tuple(bundle.train_plain.images.shape[1:]),
        student_shape=tuple(train.shape[1:]))
