"""Declared bounds: every numeric config field states what it accepts, beside its default.

    epochs: int = bounded(5, ge=1)
    alpha: float = bounded(0.9, ge=0, le=1, why="it weighs the distillation term ...")
    student_stages: List[int] = bounded(factory=lambda: [-1], free="stage indices, checked
                                        against the models when the loss is built")

`check_bounds(cfg)` walks a composed config and checks every declared field, so one
layer refuses an out-of-range value anywhere in the tree (trainer, data, a loss, a
scheme, an algorithm) before anything trains, with one line naming the key. A test
asserts that every int or float field of every schema declares its bounds (or says
with `free=` why it has none), so a new field cannot slip through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from kdrun.config.errors import ConfigError

BOUNDS = "kdrun.bounds"


@dataclass(frozen=True)
class Bounds:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""                     # appended to the error: what the value means, the fix
    free: str = ""                    # no range here: says why (e.g. checked elsewhere)

    def holds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self) -> str:
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        high = (self.le, "]") if self.le is not None else (self.lt, ")")
        if low[0] is not None and high[0] is not None:
            return f"within {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
        if low[0] is not None:
            return f"{'>=' if low[1] == '[' else '>'} {low[0]:g}"
        return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"

    def check(self, key: str, value: Any) -> None:
        if self.free or value is None or isinstance(value, bool):
            return
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value} must be a number {self.describe()}")
        if not self.holds(value):
            raise ConfigError(f"{key}={value} must be {self.describe()}"
                              + (f": {self.why}" if self.why else ""))


def bounded(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, why: str = "", free: str = "") -> Any:
    """A dataclass field with declared bounds (for a list: bounds of every entry)."""
    if not free and ge is None and gt is None and le is None and lt is None:
        raise ValueError("bounded() needs a bound (ge/gt/le/lt) or free='why none'")
    metadata = {BOUNDS: Bounds(ge, gt, le, lt, why, free)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_bounds(cls: type) -> dict[str, Bounds]:
    if not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f.metadata[BOUNDS] for f in dataclasses.fields(cls) if BOUNDS in f.metadata}


def check_bounds(node: Any, prefix: str = "") -> None:
    """Check every declared field under `node` (a config or a dataclass instance, recursively);
    ConfigError names the key as `prefix` + its path."""
    if not OmegaConf.is_config(node):
        node = OmegaConf.structured(node)
    declared = declared_bounds(OmegaConf.get_type(node))
    for key in node:
        child = node._get_node(key)
        path = f"{prefix}{key}"
        if isinstance(child, DictConfig):
            if not OmegaConf.is_missing(node, key) and not child._is_none():
                check_bounds(child, path + ".")
            continue
        bounds = declared.get(str(key))
        if bounds is None or OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, ListConfig):
            for i, item in enumerate(value):
                bounds.check(f"{path}[{i}]", item)
        else:
            bounds.check(path, value)
