"""Schemes: who teaches whom (offline: a fixed teacher; online: peers; self: the model itself).

Each module registers its config in kdrun.schemes.registry and its runners in
kdrun.algorithms.registry; importing this package imports them all.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
