"""Declared bounds: every numeric field of every schema says what it accepts, and one
walker refuses an out-of-range value anywhere in the composed tree with one line."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from omegaconf import OmegaConf

from kdrun.config.bounds import BOUNDS, Bounds, bounded, check_bounds
from kdrun.config.errors import ConfigError
from kdrun.config.schema import Config
from kdrun.plugins import load_plugins


def schemas() -> dict[str, type]:
    """Every config dataclass kdrun composes: the root tree, each loss, scheme and algorithm."""
    from hydra.core.config_store import ConfigStore

    load_plugins()
    found: dict[str, type] = {}

    def walk(cls: type, where: str) -> None:
        if cls in found.values():
            return
        found[where] = cls
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{where}.{f.name}")

    walk(Config, "root")
    repo = ConfigStore.instance().repo["schema"]
    for group in ("loss", "scheme", "algorithm"):
        for name, node in repo[group].items():
            walk(OmegaConf.get_type(node.node), f"{group}/{name.removesuffix('.yaml')}")
    return found


def numeric(hint: typing.Any) -> bool:
    """int or float, optionally inside Optional[...] or List[...] (bool is not numeric)."""
    if hint in (int, float):
        return True
    return any(numeric(arg) for arg in typing.get_args(hint) if arg is not type(None))


def test_every_numeric_field_declares_its_bounds():
    undeclared = []
    for where, cls in schemas().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if numeric(hints[f.name]) and BOUNDS not in f.metadata:
                undeclared.append(f"{where}: {cls.__name__}.{f.name}")
    assert not undeclared, "declare bounds with kdrun.config.bounds.bounded():\n" + "\n".join(undeclared)


def test_every_default_is_within_its_bounds():
    for where, cls in schemas().items():
        check_bounds(OmegaConf.structured(cls), f"{where}.")


@pytest.mark.parametrize("bounds, value, message", [
    (Bounds(ge=1), -1, "k=-1 must be >= 1"),
    (Bounds(gt=0), 0.0, "k=0.0 must be > 0"),
    (Bounds(ge=0, le=1, why="a weight"), 1.5, "k=1.5 must be within [0, 1]: a weight"),
    (Bounds(gt=0, lt=1), 1.0, "k=1.0 must be within (0, 1)"),
    (Bounds(le=8), 9, "k=9 must be <= 8"),
])
def test_messages_name_key_value_and_range(bounds, value, message):
    with pytest.raises(ConfigError) as err:
        bounds.check("k", value)
    assert str(err.value) == message


def test_values_inside_pass_and_null_means_unset():
    Bounds(ge=0, le=1).check("k", 0)
    Bounds(ge=0, le=1).check("k", 1.0)
    Bounds(gt=0).check("k", None)
    Bounds(free="checked against the model").check("k", -5)


def test_lists_are_checked_entry_by_entry():
    @dataclasses.dataclass
    class Milestones:
        epochs: typing.List[int] = bounded(factory=lambda: [3, 6], ge=1)

    node = OmegaConf.structured(Milestones)
    check_bounds(node)
    node.epochs = [3, 0]
    with pytest.raises(ConfigError, match=r"^sched.epochs\[1\]=0 must be >= 1$"):
        check_bounds(node, "sched.")


def test_a_field_without_bound_or_reason_is_refused():
    with pytest.raises(ValueError, match="needs a bound"):
        bounded(3)
