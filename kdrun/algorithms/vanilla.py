"""Vanilla offline distillation: one fixed teacher, one student, the selected terms summed."""

from __future__ import annotations

from kdrun.algorithms.offline_cell import distill
from kdrun.algorithms.registry import register_algorithm, register_runner
from kdrun.config.schema import AlgorithmConfig

register_algorithm("vanilla", AlgorithmConfig)


@register_runner("offline", "vanilla")
def distill_offline(cell) -> dict:
    result, _ = distill(cell)
    return result
