"""Local weight files: load safely (weights_only) and explain mismatches."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdrun.tracking.checkpoint import load_file


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a raw state_dict file, a kdrun checkpoint or a {'state_dict': ...} file.

    Errors start with the path (UnreadableFile when torch cannot load it), so callers
    can put the config key in front."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: does not exist; give the path of a weights file")
    obj = load_file(path)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return obj


def load_weights(model: nn.Module, path: str | Path, key: str = "checkpoint") -> None:
    """Load `path` into `model`; `key` names the config entry in errors.

    timm state dicts (saved from a bare timm model) load into kdrun's timm
    adapter, whose parameters live under `net.`; Hugging Face state dicts (a bare
    transformers model's) into kdrun's LMModel, under `hf.`.
    """
    from kdrun.models.lm import LMModel
    from kdrun.models.timm_adapter import TimmModel

    try:
        state = read_state_dict(path)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{key}={e}") from None
    own = model.state_dict()
    if isinstance(model, TimmModel) and not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}
    if isinstance(model, LMModel) and not any(k.startswith("hf.") for k in state):
        state = {f"hf.{k}": v for k, v in state.items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{key}={path}: does not fit this model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); give weights of the same architecture")
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise ValueError(f"{key}={path}: {name} has shape {tuple(tensor.shape)} but the model "
                             f"expects {tuple(own[name].shape)} (a different class count, "
                             "vocabulary or input channels?); give weights trained on this data")
    model.load_state_dict(state)
