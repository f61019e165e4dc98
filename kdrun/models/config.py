"""Schema of a model choice; the `teacher` and `student` groups extend it (kdrun/engine/config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from kdrun.config.bounds import bounded


@dataclass
class ModelConfig:
    name: str = MISSING               # zoo name, kdrun alias or any timm architecture
    pretrained: bool = False          # timm hub weights (needs internet; off by default)
    checkpoint: Optional[str] = None  # local weights file (loaded with weights_only=True)
    # language models (task=lm, name=hf): a Hugging Face model directory or hub name
    path: Optional[str] = None
    # null = the data's class count
    num_classes: Optional[int] = bounded(None, ge=2, why="or null for the data's class count")
    kwargs: Dict[str, Any] = field(default_factory=dict)  # extra builder arguments (drop_rate, ...)
