"""Config checks that run before any data is read: a bad value fails with a
message naming the key and the fix, never deep inside a loader."""

from __future__ import annotations

import difflib

from kdrun.config.bounds import check_bounds
from kdrun.data.config import DataConfig
from kdrun.data.partition import check_partition_config
from kdrun.data.sources import DATASETS


def validate_config(cfg: DataConfig) -> None:
    if cfg.name not in DATASETS:
        close = difflib.get_close_matches(str(cfg.name), DATASETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"data.name={cfg.name} is not a dataset kdrun knows{hint}: "
                         f"choose one of {', '.join(DATASETS)}")
    check_bounds(cfg, "data.")
    check_partition_config(cfg)
    if cfg.aug_views is not None and cfg.name == "imagefolder":
        raise ValueError("data.aug_views is not supported for data=imagefolder (its augmentation "
                         "runs per sample in workers): set data.aug_views=null")


def check_max_train(cfg: DataConfig, num_classes: int) -> None:
    """Run once the class count is known (imagefolder counts its class folders)."""
    if cfg.max_train is not None and cfg.max_train < num_classes:
        raise ValueError(f"data.max_train={cfg.max_train} is smaller than the {num_classes} classes "
                         f"of {cfg.name}: set data.max_train={num_classes} or more (or null)")
