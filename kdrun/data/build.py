"""build_data: the one entry point the engine calls."""

from __future__ import annotations

from kdrun.data.bundle import DataBundle
from kdrun.data.config import DataConfig
from kdrun.data.folder_bundle import build_folder_bundle
from kdrun.data.memory_bundle import build_memory_bundle
from kdrun.data.sources import FOLDER
from kdrun.data.validate import validate_config


def build_data(cfg: DataConfig, seed: int) -> DataBundle:
    """Splits and loaders for `cfg`; the same (cfg, seed) always gives the same data.

    Fails before reading anything on a bad value, and with a message naming
    data.root (and the fix) when the dataset's files are missing.
    """
    validate_config(cfg)
    if cfg.name in FOLDER:
        return build_folder_bundle(cfg, seed)
    return build_memory_bundle(cfg, seed)
