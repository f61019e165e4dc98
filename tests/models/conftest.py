"""Shared set-up for the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run these tiny batch-2 passes on one thread.

    Measured on the 2-core CI machine while other jobs ran: one forward+backward of
    every zoo model took 2.3 s on one thread and 52 s on two, whose OpenMP workers
    spin against each other. The previous setting is restored after each module.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
