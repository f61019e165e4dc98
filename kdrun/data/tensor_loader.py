"""Loader over one in-memory split: batches are slices of preprocessed tensors."""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

from kdrun.data.batch import Batch
from kdrun.data.seeds import torch_generator

Augment = Callable[[Tensor, torch.Generator], Tensor]


class TensorLoader:
    """Yields Batch(x, y, index) from `images`/`labels` of one split.

    shuffle=True: the order (and the augmentation draws) of epoch e come from
    generators seeded by (seed, e), set with `set_epoch`; iterating the same epoch
    twice gives identical batches. shuffle=False: split order, every epoch alike.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, augment: Augment | None = None, seed: int = 0):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.seed, self.epoch = augment, seed, 0

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=torch_generator(self.seed, "shuffle", self.epoch))
        else:
            order = torch.arange(n)
        aug_gen = torch_generator(self.seed, "augment", self.epoch) if self.augment else None
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images.index_select(0, index)
            if self.augment is not None:
                x = self.augment(x, aug_gen)
            yield Batch(x, self.labels.index_select(0, index), index)
