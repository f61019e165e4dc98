"""Schemes: who teaches whom (offline: a fixed teacher; more register themselves here)."""

from kdrun.schemes import offline  # noqa: F401
