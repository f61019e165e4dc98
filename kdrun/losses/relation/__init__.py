"""Relation knowledge: methods that match relations between samples or layers."""

from kdrun.losses.relation import cc, crd, fsp, ickd, irg, kdsvd, pkt, rkd, sp  # noqa: F401
