"""Schema of the `data` config group (conf/data/*.yaml extend it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kdrun.config.bounds import bounded

WHOLE = "or null for the whole split"


@dataclass
class DataConfig:
    name: str = "digits"              # digits | fashion_mnist | cifar10 | cifar100 | imagefolder
    root: Optional[str] = None        # dataset folder; null = the dataset's default location
    download: bool = False            # cifar only: fetch the archive when root lacks it (internet)
    image_size: int = bounded(32, ge=8)   # every model sees image_size x image_size inputs
    batch_size: int = bounded(64, ge=1)
    eval_batch_size: int = bounded(256, ge=1)
    # held out from train with `seed`; picks the best epoch
    val_fraction: float = bounded(0.1, gt=0, lt=1, why="e.g. data.val_fraction=0.1")
    # subsample (seeded, stratified) for quick runs
    max_train: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_val: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_test: Optional[int] = bounded(None, ge=1, why=WHOLE)
    augment: bool = True              # the dataset's usual train augmentation (crop, flip, ...)
    # null: fresh draws every epoch; V: each sample has V fixed augmented views and every
    # epoch replays one of them (FKD), which lets the teacher-output cache serve augmented batches
    aug_views: Optional[int] = bounded(None, ge=1, why="or null for fresh augmentation every epoch")
    normalize: bool = True            # per-channel mean/std of the training split
    num_workers: int = bounded(0, ge=0)   # imagefolder only (in-memory sets need none)
    # Partitions of the train split (val/test unchanged), drawn with `seed` (kdrun/data/partition.py):
    partition: str = "none"           # none | iid | dirichlet (per-class Dir(beta), Hsu et al. 2019)
                                      # | shards (label-sorted shards, McMahan et al. 2017)
    num_partitions: int = bounded(2, ge=1)   # parts (federated clients, per-partition teachers)
    # dirichlet concentration
    dirichlet_beta: float = bounded(0.5, gt=0, why="e.g. 0.5; smaller = more label skew")
    shards_per_partition: int = bounded(2, ge=1)   # shards: label-sorted shards per part (McMahan: 2)


DATA_SCHEMA = ("image", DataConfig)  # schema/data/image (kdrun/data/schemas.py)
