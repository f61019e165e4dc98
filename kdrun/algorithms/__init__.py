"""Algorithms: how a cell trains (vanilla, and every module in this package).

Each module registers its config and its runners in kdrun.algorithms.registry;
importing this package imports them all, so a new file is all a new algorithm needs.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
