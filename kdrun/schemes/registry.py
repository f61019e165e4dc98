"""Config schemas of the distillation schemes (offline, online, self)."""

from __future__ import annotations

SCHEMES: dict[str, type] = {}


def register_scheme(name: str, config: type) -> None:
    SCHEMES[name] = config


def scheme_configs() -> dict[str, type]:
    import kdrun.schemes  # noqa: F401  (imports every scheme module)

    return dict(SCHEMES)
