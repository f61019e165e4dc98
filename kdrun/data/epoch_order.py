"""Which rows an in-memory loader visits in an epoch, shared by the image and token loaders."""

from __future__ import annotations

import torch
from torch import Tensor

from kdrun.data.seeds import torch_generator


class EpochOrder:
    """set_epoch / shard / len over `num_samples` rows in batches of `batch_size`.

    shuffle=True: epoch e's order is a permutation drawn with (seed, e), so iterating the
    same epoch twice, or after a resume, gives identical batches; shuffle=False: row order.
    Subclasses set num_samples, batch_size, shuffle, drop_last and seed.
    """

    epoch, rank, world = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard(self, rank: int, world: int) -> None:
        """Data-parallel: this rank reads every world-th row of each epoch's order. A shuffled
        (training) loader drops the remainder so every rank takes the same steps."""
        self.rank, self.world = rank, world

    def _order(self) -> Tensor:
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=torch_generator(self.seed, "shuffle", self.epoch))
        else:
            order = torch.arange(n)
        if self.world > 1:
            if self.shuffle:
                order = order[:n - n % self.world]
            order = order[self.rank::self.world]
        return order

    def __len__(self) -> int:
        n, b = len(self._order()) if self.world > 1 else self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)
