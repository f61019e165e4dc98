"""Schema of the `data` config group (conf/data/*.yaml extend it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DataConfig:
    name: str = "digits"              # digits | fashion_mnist | cifar10 | cifar100 | imagefolder
    root: Optional[str] = None        # dataset folder; null = the dataset's default location
    download: bool = False            # cifar only: fetch the archive when root lacks it (internet)
    image_size: int = 32              # every model sees image_size x image_size inputs
    batch_size: int = 64
    eval_batch_size: int = 256
    val_fraction: float = 0.1         # held out from train with `seed`; picks the best epoch
    max_train: Optional[int] = None   # subsample (seeded, stratified) for quick runs
    max_val: Optional[int] = None
    max_test: Optional[int] = None
    augment: bool = True              # the dataset's usual train augmentation (crop, flip, ...)
    aug_views: Optional[int] = None   # null: fresh draws every epoch; V: each sample has V fixed
                                      # augmented views and every epoch replays one of them (FKD),
                                      # which lets the teacher-output cache serve augmented batches
    normalize: bool = True            # per-channel mean/std of the training split
    num_workers: int = 0              # imagefolder only (in-memory sets need none)
    # Partitions of the train split (val/test unchanged), drawn with `seed` (kdrun/data/partition.py):
    partition: str = "none"           # none | iid | dirichlet (per-class Dir(beta), Hsu et al. 2019)
                                      # | shards (label-sorted shards, McMahan et al. 2017)
    num_partitions: int = 2           # parts (federated clients, per-partition teachers)
    dirichlet_beta: float = 0.5       # dirichlet concentration: smaller = more label skew
    shards_per_partition: int = 2     # shards: label-sorted shards per part (McMahan: 2)
