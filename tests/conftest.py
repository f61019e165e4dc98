"""Fixtures: every test gets W&B pinned offline and inside its tmp dir."""

from __future__ import annotations

import pytest
import torch
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


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny passes on one thread (`pytestmark = usefixtures("one_thread")`).

    Measured on the 2-core CI machine while other jobs ran: one forward+backward of
    every zoo model took 2.3 s on one thread and 52 s on two, whose OpenMP workers
    spin against each other. The previous setting is restored after the module.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
