"""Compose kdrun's job config as the CLI does, outputs and caches under one folder."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_module


def compose(overrides: list[str], root: Path):
    try:  # after issue 12 the CLI loads the plugins first
        from kdrun.plugins import load_plugins
    except ImportError:
        from kdrun.config.store import register_configs as load_plugins
    load_plugins()
    paths = [f"paths.output_dir={root}/outputs", f"paths.cache_dir={root}/cache"]
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[*overrides, *paths])
