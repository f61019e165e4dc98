"""The data of task=ssl: an image data set whose training batches carry multi-crop views and
whose scored splits carry the labelled bank their embeddings are probed against.

The training images are shown only through their views (ViewBatch.crops); their labels ride
along unused. val and test are LabelledSplits: k-NN and the linear probe fit on the frozen
embeddings of `bank` (the training split, un-augmented, in fixed order) and score the split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
from torch import Tensor

from kdrun.data.batch import Batch
from kdrun.data.build import build_data
from kdrun.data.bundle import DataBundle
from kdrun.data.seeds import torch_generator
from kdrun.data.ssl_config import MultiCropConfig
from kdrun.data.ssl_views import multi_crop


@dataclass(frozen=True)
class ViewBatch(Batch):
    """A Batch with its multi-crop views: crops[:num_global] global, the rest local."""

    crops: tuple[Tensor, ...] = ()
    num_global: int = 0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ViewBatch":
        moved = Batch.to(self, device, non_blocking)
        return ViewBatch(moved.x, moved.y, moved.index, moved.view,
                         tuple(c.to(device, non_blocking=non_blocking) for c in self.crops),
                         self.num_global)


class MultiCropLoader:
    """The training loader with views: batch i of epoch e draws its crops from a generator
    seeded by (seed, e, i), apart from the order's own stream."""

    def __init__(self, base: Any, views: MultiCropConfig, seed: int):
        self.base, self.views, self.seed = base, views, seed
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return self.base.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[ViewBatch]:
        for i, batch in enumerate(self.base):
            crops = multi_crop(batch.x, self.views, torch_generator(self.seed, "ssl_views",
                                                                    self.epoch, i))
            yield ViewBatch(batch.x, batch.y, batch.index, batch.view, crops,
                            self.views.global_crops)


class LabelledSplit:
    """A scored split (val, test) and the labelled training bank its probes are fitted on.
    `probe_memo` lets val and test share one fitted probe per epoch (kdrun/tasks/ssl_probes.py)."""

    def __init__(self, loader: Any, bank: Any, memo: dict):
        self.loader, self.bank, self.probe_memo = loader, bank, memo

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def build_ssl_data(cfg: Any, seed: int) -> DataBundle:
    """The image bundle of `cfg` without its own augmentation, with views on train and the
    training bank on val and test."""
    if cfg.augment:
        raise ValueError("data.augment=true: task=ssl shows training images only through its "
                         "multi-crop views (data.views.*); set data.augment=false")
    views = cfg.views
    if views.local_min_scale > views.local_max_scale:
        raise ValueError(f"data.views.local_min_scale={views.local_min_scale} is above "
                         f"data.views.local_max_scale={views.local_max_scale}: swap them")
    if views.local_crops and views.local_size > views.global_size:
        raise ValueError(f"data.views.local_size={views.local_size} is larger than "
                         f"data.views.global_size={views.global_size}: local crops are the small ones")
    bundle = build_data(cfg, seed)
    memo: dict = {}
    return replace(bundle, train=MultiCropLoader(bundle.train, views, seed),
                   val=LabelledSplit(bundle.val, bundle.train_plain, memo),
                   test=LabelledSplit(bundle.test, bundle.train_plain, memo))
