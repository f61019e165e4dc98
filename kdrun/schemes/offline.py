"""Offline distillation: a fixed, pre-trained teacher teaches the student (scheme=offline).

The builder's default (kdrun/engine/cell.py offline_teacher): the teacher comes from
`teacher.checkpoint`, else from the teacher cache, else it is trained once now (with
teacher.train) and cached for every later cell; it serves cached outputs where exact.
"""

from __future__ import annotations

from kdrun.config.schema import SchemeConfig
from kdrun.engine.plugins import Plugin, register_scheme


@register_scheme
class Offline(Plugin):
    name = "offline"
    config = SchemeConfig
