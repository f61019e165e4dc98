"""Algorithms: how a cell trains (vanilla; more register themselves here).

Each module registers its config and its runners in kdrun.algorithms.registry.
"""

from kdrun.algorithms import vanilla  # noqa: F401
