"""Loader over one in-memory split: batches are slices of preprocessed tensors."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from kdrun.data.augment import BatchAugment
from kdrun.data.batch import Batch
from kdrun.data.epoch_order import EpochOrder
from kdrun.data.seeds import torch_generator


class TensorLoader(EpochOrder):
    """Yields Batch(x, y, index) from `images`/`labels` of one split.

    shuffle=True: the order (and the augmentation draws) of epoch e come from
    generators seeded by (seed, e), set with `set_epoch`; iterating the same epoch
    twice gives identical batches. shuffle=False: split order, every epoch alike.

    aug_views=V: each sample has V augmented views fixed by `seed`; epoch e shows
    every sample one of them (drawn with (seed, e)) and batches carry `view`, so a
    teacher-output cache can replay the teacher's output for exactly those pixels.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, augment: BatchAugment | None = None, seed: int = 0,
                 aug_views: int | None = None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.rank, self.world = 0, 1
        self.aug_views = aug_views if augment is not None else None
        self.views = None
        if self.aug_views:
            self.views = augment.draw_views(self.aug_views, self.num_samples,
                                            torch_generator(seed, "views"))

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_samples
        order = self._order()
        aug_gen = torch_generator(self.seed, "augment", self.epoch) if self.augment else None
        epoch_views = None
        if self.views is not None:  # which stored view each sample shows this epoch
            epoch_views = torch.randint(0, self.aug_views, (n,), generator=aug_gen)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images.index_select(0, index)
            view = None
            if epoch_views is not None:
                view = epoch_views[index]
                x = self.augment.apply_view(x, self.views, view, index)
            elif self.augment is not None:
                x = self.augment(x, aug_gen)
            yield Batch(x, self.labels.index_select(0, index), index, view)

    def view_batches(self, view: int, batch_size: int) -> Iterator[Batch]:
        """Every sample in split order, showing stored view `view` (or unaugmented when the
        loader has no views): what a teacher-output cache computes its rows from."""
        n = self.num_samples
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            x = self.images.index_select(0, index)
            views = None
            if self.views is not None:
                views = torch.full_like(index, view)
                x = self.augment.apply_view(x, self.views, views, index)
            yield Batch(x, self.labels.index_select(0, index), index, views)
