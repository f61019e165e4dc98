"""Relation knowledge: methods that match relations between samples or layers.

Every module here is imported by kdrun.losses.registry: a new file is a new method."""
