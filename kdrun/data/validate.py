"""Config checks that run before any data is read: a bad value fails with a
message naming the key and the fix, never deep inside a loader."""

from __future__ import annotations

import difflib

from kdrun.data.config import DataConfig
from kdrun.data.partition import check_partition_config
from kdrun.data.sources import DATASETS

MIN_IMAGE_SIZE = 8


def validate_config(cfg: DataConfig) -> None:
    if cfg.name not in DATASETS:
        close = difflib.get_close_matches(str(cfg.name), DATASETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"data.name={cfg.name} is not a dataset kdrun knows{hint}: "
                         f"choose one of {', '.join(DATASETS)}")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={cfg.val_fraction} must lie strictly between 0 and 1 "
                         f"(e.g. data.val_fraction=0.1)")
    if cfg.image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"data.image_size={cfg.image_size} is too small: use "
                         f"data.image_size={MIN_IMAGE_SIZE} or more")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"data.{key}={getattr(cfg, key)} must be at least 1")
    for key in ("max_train", "max_val", "max_test"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise ValueError(f"data.{key}={value} must be at least 1, or null for the whole split")
    check_partition_config(cfg)
    if cfg.aug_views is not None and cfg.aug_views < 1:
        raise ValueError(f"data.aug_views={cfg.aug_views} must be at least 1, or null for fresh "
                         "augmentation every epoch")
    if cfg.aug_views is not None and cfg.name == "imagefolder":
        raise ValueError("data.aug_views is not supported for data=imagefolder (its augmentation "
                         "runs per sample in workers): set data.aug_views=null")
    if cfg.num_workers < 0:
        raise ValueError(f"data.num_workers={cfg.num_workers} must be 0 (load in the main "
                         f"process) or more")


def check_max_train(cfg: DataConfig, num_classes: int) -> None:
    """Run once the class count is known (imagefolder counts its class folders)."""
    if cfg.max_train is not None and cfg.max_train < num_classes:
        raise ValueError(f"data.max_train={cfg.max_train} is smaller than the {num_classes} classes "
                         f"of {cfg.name}: set data.max_train={num_classes} or more (or null)")
