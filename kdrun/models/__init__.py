"""Models: the registry, the timm adapter, the CIFAR KD zoo and language models; all return
ModelOutput."""

from kdrun.models.output import ModelOutput
from kdrun.models.registry import (ALIASES, UnknownModelError, create_model, list_models,
                                   lm_models, model_kind, models_of_kind, register_model,
                                   resolve, zoo_models)

__all__ = ["ALIASES", "ModelOutput", "UnknownModelError", "create_model", "list_models",
           "lm_models", "model_kind", "models_of_kind", "register_model", "resolve", "zoo_models"]
