"""Loss registry: `loss=<name>` selects the class registered under that name.

A method is one file, kdrun/losses/<knowledge>/<name>.py, found by walking the
knowledge folders (a new file there is a new method) and registered by
`@register_loss`, which reads its knowledge off the folder.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Mapping

from torch import nn

from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss, LossContext
from kdrun.models.output import ModelOutput

_LOSSES: dict[str, type[DistillationLoss]] = {}
_PACKAGE = "kdrun.losses"
_loaded = False


def knowledge_of(cls: type[DistillationLoss]) -> str:
    """The folder a method lives in (response, feature, relation), or "none" for a method
    that needs no teacher (ce, ls: the teacher-free rows of the same tables)."""
    package, _, rest = cls.__module__.partition(f"{_PACKAGE}.")
    parts = rest.split(".")
    if package or len(parts) != 2 or parts[1] != cls.name:
        raise ValueError(f"loss {cls.name!r} ({cls.__module__}.{cls.__qualname__}): a method lives "
                         f"in kdrun/losses/<knowledge>/{cls.name}.py; move it there")
    return parts[0] if cls.needs_teacher else "none"


def register_loss(cls: type[DistillationLoss]) -> type[DistillationLoss]:
    if cls.name in _LOSSES:
        raise ValueError(f"loss {cls.name!r} is registered twice")
    cls.knowledge = knowledge_of(cls)
    _LOSSES[cls.name] = cls
    return cls


def _load() -> None:
    """Import every module of every knowledge folder once (modules starting with _ excepted)."""
    global _loaded
    if _loaded:
        return
    root = importlib.import_module(_PACKAGE)
    for folder in pkgutil.iter_modules(root.__path__):
        if not folder.ispkg:
            continue
        package = importlib.import_module(f"{_PACKAGE}.{folder.name}")
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{module.name}")
    _loaded = True


def loss_classes() -> dict[str, type[DistillationLoss]]:
    _load()
    return dict(_LOSSES)


def loss_class(name: str) -> type[DistillationLoss]:
    classes = loss_classes()
    if name not in classes:
        close = difflib.get_close_matches(name, classes, n=3)
        raise ConfigError(f"loss.{name}: unknown method; "
                          f"{'did you mean ' + ', '.join(close) + '?' if close else 'known: ' + ', '.join(sorted(classes))}")
    return classes[name]


def needs_teacher(loss_cfg: Mapping[str, Any]) -> bool:
    return any(loss_class(name).needs_teacher for name in loss_cfg)


def validate_losses(loss_cfg: Mapping[str, Any]) -> None:
    if not loss_cfg:
        raise ConfigError("loss: no method selected; pick one, e.g. loss=kd or loss=ce")
    for name, cfg in loss_cfg.items():
        loss_class(name).validate(cfg)


def check_outputs(loss_cfg: Mapping[str, Any], outputs: Mapping[str, tuple[str, ModelOutput]]) -> None:
    """Fail before training when a method needs a ModelOutput field a model lacks.

    outputs maps a role ('student', 'teacher') to (model name, probe output).
    """
    for name in loss_cfg:
        cls = loss_class(name)
        for role, (model_name, out) in outputs.items():
            if role == "teacher" and not cls.needs_teacher:
                continue
            for field in cls.requires:
                value = getattr(out, field)
                if value is None or (isinstance(value, list) and not value):
                    raise ConfigError(f"loss={name} needs {field}, which {role}.name={model_name} "
                                      "does not provide; pick a model that has them "
                                      "(every kdrun zoo model does)")


def build_losses(loss_cfg: Mapping[str, Any], student: ModelOutput,
                 teacher: ModelOutput | None, context: LossContext | None = None) -> nn.ModuleDict:
    """One module per selected method, sized from the probe outputs."""
    return nn.ModuleDict({name: loss_class(name)(cfg, student, teacher, context)
                          for name, cfg in loss_cfg.items()})


def ce_weight(loss_cfg: Mapping[str, Any]) -> float:
    """Weight of the engine's label cross-entropy: the product of each method's factor
    (DESIGN.md: 1, or 1 - alpha when kd is selected)."""
    weight = 1.0
    for name, cfg in loss_cfg.items():
        weight *= loss_class(name).ce_scale(cfg)
    return weight
