"""Build the teacher or student a config names, for the data at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from kdrun.config.errors import ConfigError
from kdrun.models.registry import UnknownModelError, create_model, model_kind
from kdrun.models.weights import load_weights


def check_model_config(mcfg: Any, role: str, num_classes: int) -> None:
    """Fail early on a missing/unknown name or a class count that contradicts the data."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(mcfg) and OmegaConf.is_missing(mcfg, "name"):
        raise ConfigError(f"{role}.name is not set: with {role}=timm give {role}.name=<timm model>, "
                          f"e.g. {role}.name=resnet18")
    from kdrun.models.registry import resolve

    try:
        resolve(mcfg.name)
    except UnknownModelError as e:
        raise ConfigError(f"{role}.name={mcfg.name}: {e}") from None
    if mcfg.num_classes is not None and mcfg.num_classes != num_classes:
        raise ConfigError(f"{role}.num_classes={mcfg.num_classes} but the data has {num_classes} "
                          f"classes: drop the override or pick data with {mcfg.num_classes} classes")


def build_model(mcfg: Any, role: str, num_classes: int, in_chans: int,
                load_checkpoint: bool = True, checkpoint_key: str | None = None) -> nn.Module:
    """create_model from a ModelConfig; loads `<role>.checkpoint` (weights_only) when set.

    `checkpoint_key` names the checkpoint in errors when the user set it elsewhere
    (algorithm.checkpoints[i])."""
    check_model_config(mcfg, role, num_classes)
    kwargs = dict(mcfg.kwargs)
    if model_kind(mcfg.name) != "lm":
        model = create_model(mcfg.name, num_classes=num_classes, in_chans=in_chans,
                             pretrained=mcfg.pretrained, **kwargs)
    else:  # num_classes is the vocabulary; `hf` reads path (some configs lack the key)
        try:
            model = create_model(mcfg.name, num_classes=num_classes, pretrained=mcfg.pretrained,
                                 path=getattr(mcfg, "path", None), **kwargs)
        except (ValueError, OSError) as e:  # our one-line errors; transformers' bad path
            path = getattr(mcfg, "path", None)
            if path and not Path(path).expanduser().exists() and str(path).startswith(("/", ".", "~")):
                raise ConfigError(f"{role}.path={path}: no such model directory (give a Hugging "
                                  "Face model directory, or a hub name such as "
                                  "HuggingFaceTB/SmolLM2-135M)") from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{role}={mcfg.name}: {first}") from None
    if load_checkpoint and mcfg.checkpoint:
        try:
            load_weights(model, mcfg.checkpoint, key=checkpoint_key or f"{role}.checkpoint")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return model
