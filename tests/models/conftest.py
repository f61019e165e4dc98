"""Shared set-up for the model tests: their tiny batch-2 passes run on one thread."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _on_one_thread(one_thread):
    yield
