"""Pieces of class-incremental lifelong learning: task splits, heads, the LwF objective.

A task is a set of classes. Its data is the DataBundle's splits filtered by label
(`task_data`); its head is the columns of the shared classifier for its classes. In the
`task` scenario (Li & Hoiem's multi-head setting) a task trains and is scored on its own
head; in the `class` scenario the head is every class seen so far.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.data.tensor_loader import TensorLoader
from kdrun.engine.evaluate import top1
from kdrun.losses.response.lwf import old_heads_kd
from kdrun.models.output import ModelOutput


def split_classes(num_classes: int, tasks: int) -> list[list[int]]:
    """Classes 0..K-1 in order, cut into `tasks` contiguous groups (sizes differ by <= 1)."""
    return [group.tolist() for group in torch.arange(num_classes).tensor_split(tasks)]


def class_subset(loader, classes: Sequence[int], data_name: str,
                 batch_size: int | None = None) -> TensorLoader:
    """The samples of `loader` whose label is in `classes`, same batching and augmentation.

    Batch.index counts within the subset (0..m-1, the loader contract); `source_index`
    maps it back to the sample's position in the full split.
    """
    if not isinstance(loader, TensorLoader):
        raise ConfigError(f"data={data_name}: algorithm=lifelong splits in-memory data sets by "
                          "class (digits, fashion_mnist, cifar10, cifar100); pick one of those")
    keep = torch.isin(loader.labels, torch.as_tensor(list(classes))).nonzero().squeeze(1)
    batch_size = batch_size or loader.batch_size
    subset = TensorLoader(loader.images.index_select(0, keep), loader.labels.index_select(0, keep),
                          batch_size, shuffle=loader.shuffle,
                          drop_last=loader.drop_last and keep.numel() > batch_size,
                          augment=loader.augment, seed=loader.seed, aug_views=loader.aug_views)
    subset.source_index = keep
    return subset


def task_data(data, classes: Sequence[int], batch_size: int | None = None):
    """The DataBundle restricted to `classes` (train, train_plain, val, test); `batch_size`
    (None: the data's) batches the task's training split."""
    parts = {split: class_subset(getattr(data, split), classes, data.name,
                                 batch_size if split == "train" else None)
             for split in ("train", "train_plain", "val", "test")}
    if parts["train"].num_samples == 0:
        raise ConfigError(f"classes {list(classes)} have no training sample: raise data.max_train")
    return replace(data, **parts)


def restrict(logits: Tensor, head: Tensor) -> Tensor:
    """Logits outside `head` set to -inf, so argmax picks within the head."""
    mask = torch.full_like(logits, float("-inf"))
    mask[:, head] = 0.0
    return logits + mask


class HeadPredictor(nn.Module):
    """The student as evaluated on one head."""

    def __init__(self, student: nn.Module, head: Tensor):
        super().__init__()
        self.student = student
        self.register_buffer("head", head.clone())

    def forward(self, x: Tensor) -> ModelOutput:
        out = self.student(x)
        return replace(out, logits=restrict(out.logits, self.head))


class LwFObjective(nn.Module):
    """Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017) on one new task:

        CE(new head) + weight * sum over old heads of T^2 KL(previous || current)   (at T)

    plus the terms of the other selected methods with the previous model as teacher.
    With `previous=None` (finetune, or the first task) only the CE remains.
    """

    def __init__(self, student: nn.Module, head: list[int], old_heads: list[list[int]],
                 previous=None, temperature: float = 2.0, weight: float = 1.0,
                 losses: nn.ModuleDict | None = None):
        super().__init__()
        self.student = student
        self.losses = losses if losses is not None else nn.ModuleDict()
        self.register_buffer("head", torch.tensor(head))
        self.old_heads = [torch.tensor(h) for h in old_heads]
        self.temperature, self.weight = temperature, weight
        object.__setattr__(self, "previous", previous)  # frozen, not saved

    def predictor(self) -> nn.Module:
        return HeadPredictor(self.student, self.head)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        out = self.student(batch.x)
        position = torch.full((out.logits.shape[1],), -1, dtype=torch.long, device=batch.y.device)
        position[self.head] = torch.arange(len(self.head), device=batch.y.device)
        terms = {"ce": F.cross_entropy(out.logits[:, self.head], position[batch.y])}
        if self.previous is not None:
            old = self.previous(batch)
            if self.old_heads and self.weight > 0:
                terms["lwf"] = self.weight * old_heads_kd(out.logits, old.logits, self.old_heads,
                                                          self.temperature)
            for loss in self.losses.values():
                terms.update(loss(out, old, batch))
        return terms, restrict(out.logits, self.head).detach()


def head_accuracy(student: nn.Module, head: Sequence[int], loader, device) -> float:
    """Top-1 % on `loader` when the student predicts among `head`."""
    return top1(HeadPredictor(student, torch.tensor(list(head))), loader, device)
