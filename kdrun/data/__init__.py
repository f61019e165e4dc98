"""Datasets, train/val/test splits and loaders (DESIGN.md, "Splits").

    bundle = build_data(cfg.data, seed)
    for batch in bundle.train: batch.x, batch.y, batch.index
"""

from kdrun.data.batch import Batch
from kdrun.data.build import build_data
from kdrun.data.bundle import DataBundle, Loader
from kdrun.data.config import DataConfig
from kdrun.data.sources import DATASETS

__all__ = ["Batch", "DATASETS", "DataBundle", "DataConfig", "Loader", "build_data"]
