"""A DataBundle whose train loaders see one part of the train split.

    part = partition_bundle(data, cfg.data, seed, i)   # train/train_plain: part i only
    for batch in part.train: batch.index               # positions in the WHOLE train split

Val and test are the bundle's own. A part's batches carry the sample's original
`index` (and, with data.aug_views, the same stored views as the whole split), so
anything keyed by index reads the right rows. Each part shuffles with its own
stream derived from (seed, tag, epoch).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.data.bundle import DataBundle
from kdrun.data.folder_loader import FolderLoader
from kdrun.data.partition import Partitions, make_partitions, partition_stats
from kdrun.data.seeds import derive_seed
from kdrun.data.tensor_loader import TensorLoader

PARTITIONS_FILE = "partitions.json"


class SubsetLoader:
    """`inner` iterates the chosen samples; batches map back to split positions."""

    def __init__(self, inner, positions: torch.Tensor):
        self.inner, self.positions = inner, positions

    @property
    def num_samples(self) -> int:
        return self.inner.num_samples

    @property
    def labels(self) -> torch.Tensor:
        return self.inner.labels

    @property
    def aug_views(self) -> int | None:
        return getattr(self.inner, "aug_views", None)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def shard(self, rank: int, world: int) -> None:
        self.inner.shard(rank, world)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.inner:
            yield replace(batch, index=self.positions[batch.index])


def restrict_loader(loader, positions: np.ndarray, tag: str) -> SubsetLoader:
    """`loader` (TensorLoader or FolderLoader) over `positions` of its split only."""
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.int64)
    n = len(pos)
    if isinstance(loader, TensorLoader):
        seed = derive_seed(loader.seed, tag)
        inner = TensorLoader(loader.images.index_select(0, pos), loader.labels.index_select(0, pos),
                             loader.batch_size, shuffle=loader.shuffle,
                             drop_last=loader.drop_last and n > loader.batch_size,
                             augment=loader.augment, seed=seed, aug_views=loader.aug_views)
        if loader.views is not None:  # the whole split's stored views, not fresh ones
            inner.views = {k: v[:, pos] for k, v in loader.views.items()}
    elif isinstance(loader, FolderLoader):
        data, batches = loader.dataset, loader._loader
        inner = FolderLoader([data.samples[i] for i in pos.tolist()], data.transform,
                             batches.batch_size, shuffle=loader.sampler.shuffle,
                             drop_last=batches.drop_last and n > batches.batch_size,
                             random_transform=data.random, seed=derive_seed(loader.seed, tag),
                             num_workers=batches.num_workers)
    else:
        raise TypeError(f"cannot restrict a {type(loader).__name__} to a partition")
    return SubsetLoader(inner, pos)


def restrict(data: DataBundle, positions: np.ndarray, tag: str) -> DataBundle:
    """The bundle with train and train_plain restricted to `positions` (val/test unchanged)."""
    return replace(data, train=restrict_loader(data.train, positions, tag),
                   train_plain=restrict_loader(data.train_plain, positions, tag))


def train_labels(data: DataBundle) -> np.ndarray:
    return data.train_plain.labels.numpy()


def partitions_of(data: DataBundle, data_cfg: Any, seed: int, public_fraction: float = 0.0,
                  scheme: str | None = None) -> Partitions:
    return make_partitions(data_cfg, train_labels(data), seed, public_fraction, scheme)


def partition_bundle(data: DataBundle, data_cfg: Any, seed: int, index: int) -> DataBundle:
    """The bundle restricted to part `index` of data.partition (no public hold-out)."""
    parts = partitions_of(data, data_cfg, seed).parts
    if not 0 <= index < len(parts):
        raise ConfigError(f"partition {index} does not exist: data.num_partitions={len(parts)} "
                         f"(use 0..{len(parts) - 1})")
    return restrict(data, parts[index], f"partition{index}")


def write_partitions(cell_dir: Path, data_cfg: Any, data: DataBundle, seed: int,
                     partitions: Partitions | None = None) -> dict[str, Any] | None:
    """partitions.json in the cell dir (per part: samples, class histogram); None when
    data.partition=none and no partitions are given."""
    from kdrun.tracking.result import write_json_atomic

    if partitions is None:
        if data_cfg.partition == "none":
            return None
        partitions = partitions_of(data, data_cfg, seed)
    stats = partition_stats(partitions, data_cfg, train_labels(data), data.num_classes, seed)
    write_json_atomic(Path(cell_dir) / PARTITIONS_FILE, stats)
    return stats
