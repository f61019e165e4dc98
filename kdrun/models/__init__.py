"""Models: the registry, the timm adapter and the CIFAR KD zoo; all return ModelOutput."""

from kdrun.models.output import ModelOutput
from kdrun.models.registry import (ALIASES, UnknownModelError, create_model, list_models,
                                   register_model, resolve, zoo_models)

__all__ = ["ALIASES", "ModelOutput", "UnknownModelError", "create_model", "list_models",
           "register_model", "resolve", "zoo_models"]
