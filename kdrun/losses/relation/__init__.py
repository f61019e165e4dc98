"""Relation knowledge: methods that match relations between samples or layers."""

from kdrun.losses.relation import sp  # noqa: F401
