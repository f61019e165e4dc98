"""Fixtures: every test gets W&B pinned offline and inside its tmp dir."""

from __future__ import annotations

import pytest
from helpers import compose_config


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """W&B never leaves the machine and never writes outside tmp dirs."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR",
                "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-env" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def compose_cfg(tmp_path):
    return lambda overrides=(): compose_config(list(overrides), tmp_path)
