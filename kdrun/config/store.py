"""Register kdrun's schemas and generated options in Hydra's ConfigStore.

- `kdrun_schema`: the root Config (conf/config.yaml extends it).
- `schema/loss/<name>`: each method's config class (conf/loss/<name>.yaml extends it).
- `schema/scheme/<name>`, `schema/algorithm/<name>`, `schema/task/<name>`: likewise.
- `schema/data/<kind>` (image, text, ...; kdrun/data/schemas.py): what conf/data/<name>.yaml extends.
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
from kdrun.data.schemas import data_schemas
from kdrun.engine.config import StudentConfig, TeacherConfig, TeacherTrainConfig

# language models whose options load published weights (local files: see kdrun/models/lm.py)
PRETRAINED_LMS = ("smollm2", "hf")

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
    """Idempotent (a second call stores the same nodes); the schemes and algorithms registered
    so far are stored, so call it through kdrun.plugins.load_plugins()."""
    register_resolvers()
    from kdrun.engine.plugins import ALGORITHMS, SCHEMES
    from kdrun.losses import loss_classes
    from kdrun.models import list_models
    from kdrun.tasks import task_configs

    cs = ConfigStore.instance()
    cs.store(name="kdrun_schema", node=Config)
    for name, schema in data_schemas().items():  # image, text, ... (kdrun/data/*config.py)
        cs.store(group="schema/data", name=name, node=schema)
    for name, cls in loss_classes().items():
        cs.store(group="schema/loss", name=name, node=cls.config)
    for name, plugin in SCHEMES.items():  # filled by kdrun.plugins.load_plugins()
        cs.store(group="schema/scheme", name=name, node=plugin.config)
    for name, plugin in ALGORITHMS.items():
        cs.store(group="schema/algorithm", name=name, node=plugin.config)
    for name, config in task_configs().items():
        cs.store(group="schema/task", name=name, node=config)
    for model in [*list_models(), "timm"]:
        name = "???" if model == "timm" else model
        if model in PRETRAINED_LMS:  # used as published: loaded, not trained, by default
            cs.store(group="teacher", name=model, node=TeacherConfig(
                name=name, pretrained=True, train=TeacherTrainConfig(epochs=0),
                kwargs={"dtype": "bfloat16"}))  # frozen: bf16 halves its forward here
            cs.store(group="student", name=model, node=StudentConfig(name=name, pretrained=True))
            continue
        cs.store(group="teacher", name=model, node=TeacherConfig(name=name))
        cs.store(group="student", name=model, node=StudentConfig(name=name))
