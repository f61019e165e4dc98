"""One entry point for every model: the CIFAR KD zoo, any timm model and language models.

`create_model(name, num_classes, in_chans)` resolves `name` in this order: the
zoo (registered with `@register_model`), the language models (`@register_lm` in
kdrun/models/lm.py, including `hf` for any Hugging Face causal LM), kdrun's
aliases, then timm. Unknown names fail early with close matches. Every model
returns a ModelOutput. transformers is imported only when an LM is built.
"""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

_ZOO: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}  # zoo name -> model kind, when not "image"

# timm models offered by name as `teacher=` / `student=` options (any other timm
# model: `teacher=timm teacher.name=<model>`). timm keeps plain names such as
# resnet50. `mobilenet` is timm's small MobileNetV3; the "MobileNetV2" of the
# CIFAR KD tables is the zoo's half-width `mobilenetv2`.
ALIASES: dict[str, str] = {"mobilenet": "mobilenetv3_small_100", "resnet18": "resnet18",
                           "resnet34": "resnet34", "resnet50": "resnet50"}


class UnknownModelError(ValueError):
    pass


def register_model(builder: Callable[..., nn.Module] | None = None, *, kind: str = "image"):
    """Register a zoo builder under its function name (timm's convention).

    `kind` says what the model maps (kdrun.tasks refuses a model of another kind than its
    task trains): "image" (an image to class logits) by default; a task with other models
    registers them with its own kind, e.g. `@register_model(kind="segmentation")`.
    """
    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _ZOO:
            raise ValueError(f"model {name!r} is registered twice")
        _ZOO[name] = fn
        if kind != "image":
            _KINDS[name] = kind
        return fn
    return add if builder is None else add(builder)


def _load_zoo() -> None:
    from kdrun.models import zoo  # noqa: F401  (registers the zoo builders)


def zoo_models() -> list[str]:
    _load_zoo()
    return sorted(_ZOO)


def _lm_builders() -> dict[str, Callable[..., nn.Module]]:
    from kdrun.models.lm import LM_BUILDERS  # imports no transformers

    return LM_BUILDERS


def lm_models() -> list[str]:
    """The language models (task=lm), `hf` included."""
    return sorted(_lm_builders())


def list_models(include_timm: bool = False) -> list[str]:
    """Zoo names, language models and aliases; with include_timm, every timm architecture too."""
    names = set(zoo_models()) | set(lm_models()) | set(ALIASES)
    if include_timm:
        import timm

        names |= set(timm.list_models())
    return sorted(names)


def resolve(name: str) -> tuple[str, str]:
    """('zoo', name), ('lm', name) or ('timm', timm_name); UnknownModelError with suggestions."""
    _load_zoo()
    if name in _ZOO:
        return "zoo", name
    if name in _lm_builders():
        return "lm", name
    if name in ALIASES:
        return "timm", ALIASES[name]
    import timm

    if timm.is_model(name):
        return "timm", name
    candidates = list_models(include_timm=True)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see kdrun.models.list_models()"
    raise UnknownModelError(f"unknown model {name!r}: {hint}")


def model_kind(name: str) -> str:
    """'lm' for language models (token ids in, per-token outputs), the kind a zoo model was
    registered with, else 'image' (zoo classifiers and every timm model)."""
    source, resolved = resolve(name)
    if source == "lm":
        return "lm"
    return _KINDS.get(resolved, "image") if source == "zoo" else "image"


def models_of_kind(kind: str) -> list[str]:
    """The registered names of one kind (timm's image models are not listed)."""
    return [m for m in list_models() if model_kind(m) == kind]


def create_model(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                 **kwargs) -> nn.Module:
    """Build `name` for `num_classes` classes and `in_chans` input channels.

    kwargs that are None are dropped, so a config's null means "model default".
    `pretrained=True` asks timm for hub weights (needs internet); zoo models have
    none, so load local weights with kdrun.models.weights.load_weights instead.
    Language models take `num_classes` as the vocabulary, ignore `in_chans` and
    read `path` (`hf`) and `pretrained` themselves.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    source, resolved = resolve(name)
    if source == "lm":
        return _lm_builders()[resolved](num_classes=num_classes, pretrained=pretrained, **kwargs)
    if source == "zoo":
        if pretrained:
            raise ValueError(f"model {name!r} is a kdrun zoo model with no published weights: "
                             "set pretrained=false and give local weights with checkpoint=<path>")
        return _ZOO[resolved](num_classes=num_classes, in_chans=in_chans, **kwargs)
    from kdrun.models.timm_adapter import TimmModel

    return TimmModel(resolved, num_classes=num_classes, in_chans=in_chans,
                     pretrained=pretrained, **kwargs)
