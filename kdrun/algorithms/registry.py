"""Which (scheme, algorithm) pairs kdrun can run, and each algorithm's config schema.

An algorithm module registers its config (`register_algorithm`) and the function
that runs a cell for each scheme it supports (`@register_runner(scheme, algorithm)`).
"""

from __future__ import annotations

from typing import Callable

from kdrun.config.errors import ConfigError

ALGORITHMS: dict[str, type] = {}
_RUNNERS: dict[tuple[str, str], Callable[[object], dict]] = {}


def register_algorithm(name: str, config: type) -> None:
    ALGORITHMS[name] = config


def register_runner(scheme: str, algorithm: str):
    def decorate(fn: Callable[[object], dict]) -> Callable[[object], dict]:
        _RUNNERS[(scheme, algorithm)] = fn
        return fn
    return decorate


def _load() -> None:
    import kdrun.algorithms  # noqa: F401  (imports every algorithm module)
    import kdrun.schemes  # noqa: F401


def algorithm_configs() -> dict[str, type]:
    _load()
    return dict(ALGORITHMS)


def runner_for(scheme: str, algorithm: str) -> Callable[[object], dict]:
    _load()
    if (scheme, algorithm) not in _RUNNERS:
        known = ", ".join(f"scheme={s} algorithm={a}" for s, a in sorted(_RUNNERS))
        raise ConfigError(f"scheme={scheme} algorithm={algorithm} is not a combination kdrun "
                          f"runs; known: {known}")
    return _RUNNERS[(scheme, algorithm)]
