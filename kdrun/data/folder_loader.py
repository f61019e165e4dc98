"""Loader for image folders: a torch DataLoader (workers decode images) that
yields Batch and is deterministic per (seed, epoch) like TensorLoader."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdrun.data.batch import Batch
from kdrun.data.seeds import derive_seed, torch_generator


class IndexedImages(Dataset):
    """One split's (path, label) samples; item i is (image tensor, label, i).

    A random transform draws from a torch RNG seeded by (seed, epoch, i) inside
    fork_rng, so augmentation does not depend on worker count or scheduling and
    leaves the process RNG untouched.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable, random: bool, seed: int):
        self.samples, self.transform, self.random = list(samples), transform, random
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        image = default_loader(path)  # RGB PIL image
        if not self.random:
            return self.transform(image), label, i
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "augment", self.epoch, i))
            return self.transform(image), label, i


class EpochOrder(Sampler[int]):
    """Split order, or a permutation drawn from (seed, epoch) when shuffling."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(torch.randperm(self.n, generator=torch_generator(self.seed, "shuffle", self.epoch)).tolist())


def collate_batch(items: list[tuple[torch.Tensor, int, int]]) -> Batch:
    xs, ys, idx = zip(*items)
    return Batch(torch.stack(xs), torch.tensor(ys, dtype=torch.int64), torch.tensor(idx, dtype=torch.int64))


class FolderLoader:
    """Same interface as TensorLoader: set_epoch, len, iteration over Batch, labels."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable, batch_size: int, *,
                 shuffle: bool = False, drop_last: bool = False, random_transform: bool = False,
                 seed: int = 0, num_workers: int = 0):
        self.dataset = IndexedImages(samples, transform, random_transform, seed)
        self.sampler = EpochOrder(len(samples), shuffle, seed)
        self.labels = torch.tensor([y for _, y in samples], dtype=torch.int64)
        self.seed, self.epoch = seed, 0
        # the loader draws its workers' base seed from this generator, not the global RNG
        self._generator = torch_generator(seed, "workers", 0)
        self._loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.sampler,
                                  num_workers=num_workers, collate_fn=collate_batch,
                                  drop_last=drop_last, generator=self._generator)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.dataset.epoch = self.sampler.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        self._generator.manual_seed(derive_seed(self.seed, "workers", self.epoch))
        return iter(self._loader)
