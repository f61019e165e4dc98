"""Algorithms: how a cell trains (vanilla now; multi-teacher, adversarial, ... next).

`algorithm_runner(scheme, algorithm)` returns the function that runs a cell,
or a ConfigError naming the combination that kdrun cannot run.
"""

from __future__ import annotations

from typing import Callable

from kdrun.config.errors import ConfigError


def algorithm_runner(scheme: str, algorithm: str) -> Callable[[object], dict]:
    from kdrun.algorithms import vanilla

    runners = {("offline", "vanilla"): vanilla.run}
    if (scheme, algorithm) not in runners:
        known = ", ".join(f"scheme={s} algorithm={a}" for s, a in runners)
        raise ConfigError(f"scheme={scheme} algorithm={algorithm} is not available; known: {known}")
    return runners[(scheme, algorithm)]
