"""conf/loss, conf/scheme and conf/algorithm show their dataclass defaults as values.

Each option's YAML lists every field of its dataclass (nested ones too) at its default, and
composing the option gives exactly those values, so YAML and Python cannot drift apart.
A preset (conf/loss/short/, conf/loss/crd_bench/) lists every field too; its header comment
states each change as `key: default -> value`, and exactly those keys differ.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import compose_config
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import kdrun.conf

CONF = Path(kdrun.conf.__path__[0])
GROUPS = ("loss", "scheme", "algorithm")
PACKAGE = re.compile(r"^# @package loss\.(\w+)$", re.M)
SCHEMA = re.compile(r"^  - /schema/(\w+)/(\w+)@_here_$", re.M)
CHANGE = re.compile(r"(\w+): (\S+) -> ([^\s,]+)")


def option_files() -> list[tuple[str, str, Path]]:
    return [(group, path.relative_to(CONF / group).with_suffix("").as_posix(), path)
            for group in GROUPS for path in sorted((CONF / group).rglob("*.yaml"))]


FILES = option_files()
IDS = [f"{group}={option}" for group, option, _ in FILES]


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> dict:
    """The dataclass defaults the YAMLs extend, as registered (schema/<group>/<name>)."""
    compose_config([], tmp_path_factory.mktemp("compose"))     # registers the schemas
    repo = ConfigStore.instance().repo["schema"]
    return {(group, name.removesuffix(".yaml")): OmegaConf.to_container(node.node)
            for group in GROUPS for name, node in repo[group].items()}


def key_and_schema(group: str, path: Path) -> tuple[str, tuple[str, str]]:
    """(the key the option fills under its group, the schema its defaults list names)."""
    text = path.read_text()
    schema = SCHEMA.search(text)
    assert schema and schema.group(1) == group, f"{path}: no `- /schema/{group}/<name>@_here_` default"
    key = PACKAGE.search(text).group(1) if group == "loss" else path.stem
    assert group != "loss" or key == schema.group(2), f"{path}: package loss.{key}, schema {schema.group(2)}"
    return key, (group, schema.group(2))


def yaml_values(path: Path) -> dict:
    values = OmegaConf.to_container(OmegaConf.load(path))
    values.pop("defaults", None)
    return values


def header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[:lines.index("defaults:")] if line.startswith("#"))


def is_preset(group: str, option: str) -> bool:
    return group == "loss" and "/" in option


def test_every_option_file_is_checked():
    assert {"loss=kd", "loss=ttm", "loss=short/dkd", "loss=crd_bench/at", "scheme=online",
            "algorithm=federated"} <= set(IDS)


@pytest.mark.parametrize("group,option,path", FILES, ids=IDS)
def test_yaml_lists_every_field_at_its_default(group, option, path, schemas):
    _, schema = key_and_schema(group, path)
    defaults = schemas[schema]
    values = yaml_values(path)
    assert list(values) == list(defaults), f"{path}: fields differ from schema/{'/'.join(schema)}"
    changed = {key for key in defaults if values[key] != defaults[key]}
    if not is_preset(group, option):
        assert not changed, f"{path}: {sorted(changed)} differ from the dataclass defaults"
        return
    claims = {key: (yaml.safe_load(old), yaml.safe_load(new))
              for key, old, new in CHANGE.findall(header(path))}
    assert claims, f"{path}: the header must state each change as `key: default -> value`"
    assert set(claims) == changed, f"{path}: the header names {sorted(claims)}, the values change {sorted(changed)}"
    for key, (old, new) in claims.items():
        assert (old, new) == (defaults[key], values[key]), f"{path}: {key}"


@pytest.mark.parametrize("group,option,path", FILES, ids=IDS)
def test_composing_an_option_gives_its_yaml_values(group, option, path, compose_cfg):
    key, _ = key_and_schema(group, path)
    cfg = compose_cfg([f"{group}={option}"])
    node = cfg.loss[key] if group == "loss" else cfg[group]
    assert OmegaConf.to_container(node) == yaml_values(path)
