"""Load every scheme and algorithm, then register kdrun's configs with Hydra.

Schemes and algorithms sit above the engine: importing their packages fills the
engine's plug-in registries (kdrun/engine/plugins.py). The CLI, kdrun-table and the
tests call load_plugins() before composing a config.
"""

from __future__ import annotations


def load_plugins() -> None:
    import kdrun.algorithms  # noqa: F401  (each module registers its plug-in)
    import kdrun.schemes  # noqa: F401
    from kdrun.config.store import register_configs

    register_configs()
