"""Vanilla distillation: the selected terms summed, one student, under any scheme.

Under scheme=offline that is one fixed teacher (the builder's defaults, no hook);
under online and self the scheme decides who teaches.
"""

from __future__ import annotations

from kdrun.config.schema import AlgorithmConfig
from kdrun.engine.plugins import Plugin, register_algorithm


@register_algorithm
class Vanilla(Plugin):
    name = "vanilla"
    config = AlgorithmConfig
    schemes = ("offline", "online", "self")
