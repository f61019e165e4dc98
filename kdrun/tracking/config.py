"""Schema of the `logger` group (metrics.jsonl and result.json are always written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class LoggerConfig:
    name: str = "wandb"               # wandb | none
    mode: str = "offline"             # offline (default: nothing leaves the machine) | online
    project: str = "kdrun"
    entity: Optional[str] = None
    group: Optional[str] = None       # null = the sweep dir name in multiruns
    tags: List[str] = field(default_factory=list)
