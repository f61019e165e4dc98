"""Register kdrun's schemas and generated options in Hydra's ConfigStore.

- `kdrun_schema`: the root Config (conf/config.yaml extends it).
- `schema/loss/<name>`: each method's config class (conf/loss/<name>.yaml extends it).
- `schema/scheme/<name>`, `schema/algorithm/<name>`: likewise.
- `teacher/<model>` and `student/<model>`: one option per zoo model and alias,
  generated from the model registry so both groups share one definition;
  `teacher=timm teacher.name=<any timm model>` reaches the rest of timm.
"""

from __future__ import annotations

import os
import re
import hashlib
import secrets
import time

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from kdrun.config.schema import Config
from kdrun.models.config import StudentConfig, TeacherConfig

_registered = False


def cell_dirname(override_dirname: str) -> str:
    """A readable, stable folder name for a sweep cell from its overrides."""
    name = re.sub(r"[^\w.,=+\-\[\]]", "_", override_dirname) or "default"
    if len(name) > 200:  # file names stop at 255 bytes; keep the head readable, hash the rest
        digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
        name = f"{name[:180]}...{digest}"
    return name


def run_name() -> str:
    """<date>/<time>-<uid> for a single run: two runs started in the same second differ.

    Under torchrun every rank must pick the same folder: the name comes from the
    run id torchrun shares with all ranks (set hydra.run.dir when it has none).
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and run_id != "none":
        return time.strftime("%Y-%m-%d") + f"/torchrun-{run_id[:12]}"
    return time.strftime("%Y-%m-%d/%H-%M-%S") + f"-{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def register_resolvers() -> None:
    # the launch directory: ${hydra:runtime.cwd} is unset when a sweeper reads hydra.sweep.dir
    OmegaConf.register_new_resolver("kdrun.cwd", os.getcwd, replace=True)
    OmegaConf.register_new_resolver("kdrun.cell", cell_dirname, replace=True)
    OmegaConf.register_new_resolver("kdrun.run_name", run_name, replace=True, use_cache=True)


def register_configs() -> None:
    global _registered
    register_resolvers()
    if _registered:
        return
    from kdrun.algorithms.registry import algorithm_configs
    from kdrun.losses import loss_classes
    from kdrun.models import list_models
    from kdrun.schemes.registry import scheme_configs

    cs = ConfigStore.instance()
    cs.store(name="kdrun_schema", node=Config)
    for name, cls in loss_classes().items():
        cs.store(group="schema/loss", name=name, node=cls.config)
    for name, config in scheme_configs().items():
        cs.store(group="schema/scheme", name=name, node=config)
    for name, config in algorithm_configs().items():
        cs.store(group="schema/algorithm", name=name, node=config)
    for model in [*list_models(), "timm"]:
        name = "???" if model == "timm" else model
        cs.store(group="teacher", name=model, node=TeacherConfig(name=name))
        cs.store(group="student", name=model, node=StudentConfig(name=name))
    _registered = True
