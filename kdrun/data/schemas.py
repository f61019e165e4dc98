"""The data group's schemas, one per kind of data: `schema/data/<name>` in the ConfigStore.

Each kdrun/data/*config.py module names its schema with `DATA_SCHEMA = (name, dataclass)`
(config.py: image, text_config.py: text); a conf/data/<option>.yaml extends one of them.
A new kind of data is a new `<kind>_config.py` here, found without a registry to edit.
"""

from __future__ import annotations

import importlib
import pkgutil


def data_schemas() -> dict[str, type]:
    import kdrun.data as package

    found: dict[str, type] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("config"):
            schema = getattr(importlib.import_module(f"kdrun.data.{module.name}"), "DATA_SCHEMA", None)
            if schema is not None:
                name, cls = schema
                if name in found:
                    raise ValueError(f"data schema {name!r} is defined twice")
                found[name] = cls
    return found
