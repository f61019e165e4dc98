"""Schemes: who teaches whom (offline: a fixed teacher; online: peers; self: the model itself).

Each module registers its plug-in (kdrun/engine/plugins.py) when imported; importing this
package imports them all, so a new file is all a new scheme needs.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
